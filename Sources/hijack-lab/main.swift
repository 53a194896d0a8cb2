import Glibc
import HijackCLI
import HijackSystem

// Inside a `hijack-lab kernels` guest this program is the kernel's init (pid 1).
if GuestInit.isRequested() { exit(GuestInit.run()) }
// A hidden role for the tests (SpawnProbe).
if SpawnProbe.isRequested() { exit(SpawnProbe.run()) }
// The front door, with no Foundation: help, --version and audit here; the rest in hijack-lab-full.
exit(Front.run(ProcessArguments.commandLine))
