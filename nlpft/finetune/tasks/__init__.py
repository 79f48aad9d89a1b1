"""Task plug-ins (see `base.Task`): one module per task, registered here in --help order."""

from nlpft.finetune.tasks.base import (
    Splits,
    Task,
    register,
    task_class,
    task_help,
    task_names,
    unregister,
)
from nlpft.finetune.tasks.multi import MultiLabelTask
from nlpft.finetune.tasks.regression import RegressionTask
from nlpft.finetune.tasks.single import SingleLabelTask
from nlpft.finetune.tasks.tag import TagTask

register(SingleLabelTask)
register(MultiLabelTask)
register(RegressionTask)
register(TagTask)


def task_of(opts):
    """(the options checked, dataset names resolved to paths and --task's own options
    resolved; the untrained task they configure): the first steps of `finetune` and
    `split`, before any file is read."""
    import dataclasses

    from nlpft.finetune import plugin_options

    opts.validate()
    opts = opts.with_inputs_resolved()
    task_type = task_class(opts.task)
    opts = dataclasses.replace(opts, task_options=plugin_options.resolve(
        plugin_options.TASK, task_type, opts.task_options, selected=f"--task {opts.task}"))
    return opts, task_type.from_options(opts)


__all__ = ["Splits", "Task", "register", "task_class", "task_help", "task_names", "task_of", "unregister"]
