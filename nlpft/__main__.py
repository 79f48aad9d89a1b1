from nlpft.cli.main import entry

entry()
