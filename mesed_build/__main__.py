from mesed_build.cli import main

main()
