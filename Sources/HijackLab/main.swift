import Glibc
import HijackSystem

// The Foundation half: the lab, the matrix and the reports. `hijack-lab` execs it.
exit(CLI.run(ProcessArguments.commandLine))
