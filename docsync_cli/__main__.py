from docsync_cli.cli.app import main

main()
