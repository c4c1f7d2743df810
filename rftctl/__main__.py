from rftctl.cli.app import main

main()
