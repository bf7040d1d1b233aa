from kfboot.cli import main

main()
