import Glibc
import HijackLab

// Inside a `hijack-lab kernels` guest this binary is the kernel's init (pid 1).
if GuestInit.isRequested() { exit(GuestInit.run()) }
exit(CLI.run(Array(CommandLine.arguments.dropFirst())))
