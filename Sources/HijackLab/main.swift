import Glibc

// The Foundation half: the lab, the matrix and the reports. `hijack-lab` execs it.
exit(CLI.run(Array(CommandLine.arguments.dropFirst())))
