import Glibc
import HijackLab

exit(CLI.run(Array(CommandLine.arguments.dropFirst())))
