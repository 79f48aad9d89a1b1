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

__all__ = ["Splits", "Task", "register", "task_class", "task_help", "task_names", "unregister"]
