from cilium_lab.cli import main

main()
