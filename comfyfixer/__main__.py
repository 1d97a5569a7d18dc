from comfyfixer.cli import main

main()
