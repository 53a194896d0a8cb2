import Glibc
import HijackCLI

// The front door, with no Foundation: help, --version and audit here; the rest in hijack-lab-full.
exit(Front.run(Array(CommandLine.arguments.dropFirst())))
