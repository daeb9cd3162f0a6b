"""The `laionknn` command line; each subcommand calls one library function."""
