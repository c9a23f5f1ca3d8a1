"""The commands of the elmpipe command line, one module per group of commands."""
