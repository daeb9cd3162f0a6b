from laionknn.cli.main import main

main()
