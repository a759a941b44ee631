from edgeport.cli import entry

entry()
