import HijackCLI
import HijackAgent
import HijackAudit
import HijackSystem
import Foundation
import Glibc

/// A job of the lab, the same on the host and in a guest: only the folders differ.
struct LabJob {
    enum Kind {
        /// `all`: one outcome per scenario.
        case scenarios
        /// `matrix`, full or filtered: one outcome per case and baseline.
        case matrix
    }

    let name: String
    let kind: Kind
    /// For a re-run: the only keys it is run for (a filtered matrix brings neighbouring cases along).
    var keys: Set<String>? = nil
    /// Arguments after `hijack-lab`, given the output folder and the scenario folder.
    let arguments: (_ output: String, _ scenarios: String) -> [String]

    func outputFile(in folder: String) -> String { folder + "/" + name + ".json" }

    /// Deadlines for agents and scenarios, the same on the host and in every guest: software
    /// emulation runs the lab some 50 times slower, and an agent that misses its deadline there
    /// is a slow machine, not a kernel's answer. Deadlines do not change what the kernel does.
    static let patience = ["--timeout", "60"]
    static let scenarioPatience = patience + ["--deadline", "900"]

    /// Every valid scenario, by name: `run` rather than `all`, since `all` also runs the
    /// matrix cases of its "At a glance" table, minutes under emulation, and they are not compared.
    static func catalog(_ names: [String]) -> LabJob {
        LabJob(name: "catalog", kind: .scenarios) { output, scenarios in
            ["run"] + names + ["--scenarios", scenarios, "--topology", "netns", "--json", output + "/catalog.json"] + scenarioPatience
        }
    }

    /// The full matrix, or the cases a filter selects (`--transport tcp --users other`).
    static func matrix(filter: [String]) -> LabJob {
        LabJob(name: "matrix", kind: .matrix) { output, _ in
            ["matrix"] + filter + ["--topology", "netns", "--json", output + "/matrix.json", "--report", output + "/MATRIX.md"] + patience
        }
    }

    static func rerunScenarios(_ names: [String], repetition: Int) -> LabJob {
        let job = "rerun-scenarios-\(repetition)"
        return LabJob(name: job, kind: .scenarios, keys: Set(names.map { "scenario " + $0 })) { output, scenarios in
            ["run"] + names + ["--scenarios", scenarios, "--topology", "netns", "--json", output + "/\(job).json"] + scenarioPatience
        }
    }

    static func rerunMatrix(_ filter: [String], key: String, index: Int, repetition: Int) -> LabJob {
        let job = "rerun-matrix-\(index)-\(repetition)"
        return LabJob(name: job, kind: .matrix, keys: [key]) { output, _ in
            ["matrix"] + filter + ["--topology", "netns", "--json", output + "/\(job).json"] + patience
        }
    }
}

/// One `kernels` run: the host's column, each guest's, the re-runs, and the comparison.
final class KernelsSession {
    let console: Console
    let executable: String
    let qemu: String
    let folder: String
    let scenarioFolder: String
    let scenarioFiles: [String]
    /// The names of the valid scenarios in the folder.
    let scenarioNames: [String]
    let matrix: Bool
    let matrixFilter: [String]
    let bootTimeout: Double
    let runTimeout: Double
    /// KVM is tried while it has not failed; a guest that does not come up under KVM is booted
    /// again with software emulation, and so is every later one.
    private(set) var useKVM: Bool
    /// A KVM guest that has not said hello by then is taken for a KVM that does not work.
    static let kvmBootSeconds = 60.0
    /// Matrix cases re-run on every kernel whatever the first run shows. The prototype
    /// saw this one differ once on Linux 6.1.170 (the probe to 127.0.0.1 reached nobody, where
    /// 6.18 delivered it to the first socket): repetition tells a kernel rule from a lost probe.
    static let watchedKeys = ["matrix tcp other ::ffff:127.0.0.1 SO_REUSEADDR / 127.0.0.1 SO_REUSEADDR"]
    /// More differing matrix cells than this are listed, not re-run (each re-run is a matrix run).
    static let rerunLimit = 40

    init(console: Console, executable: String, qemu: String, folder: String, scenarioFolder: String, scenarioFiles: [String], scenarioNames: [String], matrix: Bool, matrixFilter: [String],
         bootTimeout: Double, runTimeout: Double, useKVM: Bool) {
        self.console = console
        self.executable = executable
        self.qemu = qemu
        self.folder = folder
        self.scenarioFolder = scenarioFolder
        self.scenarioFiles = scenarioFiles
        self.scenarioNames = scenarioNames
        self.matrix = matrix
        self.matrixFilter = matrixFilter
        self.bootTimeout = bootTimeout
        self.runTimeout = runTimeout
        self.useKVM = useKVM
    }

    func run(kernels: [KernelSource], modules: [[(String, [UInt8])]], repeats: Int) -> KernelsResult {
        let firstJobs = [LabJob.catalog(scenarioNames)] + (matrix ? [LabJob.matrix(filter: matrixFilter)] : [])
        var failures: [String: String] = [:]
        var host = hostColumn()
        runOnHost(firstJobs, into: &host, rerun: false)
        var columns = [host]
        var guests: [(index: Int, column: Int)] = []
        for (index, kernel) in kernels.enumerated() {
            if ChildRegistry.shared.interruption != nil { break }
            var column = KernelColumn(label: kernel.release, release: kernel.release, packageVersion: kernel.packageVersion, isHost: false, how: "qemu")
            if let failure = boot(kernel, modules: modules[index], jobs: firstJobs, into: &column, rerun: false, pass: "first") {
                failures[column.label] = failure
                report(failure, label: column.label)
                continue
            }
            guests.append((index, columns.count))
            columns.append(column)
        }
        // Only kernels that gave results are compared.
        var differing = KernelComparison.differingKeys(columns)
        var notRerun: [String] = []
        // Cases watched for a known question are re-run on every kernel even when they agree.
        let watched = Self.watchedKeys.filter { key in !differing.contains(key) && columns.allSatisfy { $0.outcomes[key] != nil } }
        if !differing.isEmpty || !watched.isEmpty, ChildRegistry.shared.interruption == nil {
            let scenarioNames = differing.filter { $0.hasPrefix("scenario ") }.map { String($0.dropFirst("scenario ".count)) }
            var matrixKeys = differing.filter { $0.hasPrefix("matrix ") }
            if matrixKeys.count > Self.rerunLimit {
                notRerun = Array(matrixKeys[Self.rerunLimit...])
                matrixKeys = Array(matrixKeys.prefix(Self.rerunLimit))
            }
            matrixKeys += watched
            console.err("\(differing.count) outcomes differ between kernels; re-running \(scenarioNames.count + matrixKeys.count - watched.count) of them"
                + (watched.isEmpty ? "" : " and \(watched.count) watched case(s)") + " \(repeats) times on every kernel")
            var jobs: [LabJob] = []
            for repetition in 1...repeats {
                if !scenarioNames.isEmpty { jobs.append(.rerunScenarios(scenarioNames, repetition: repetition)) }
                for (index, key) in matrixKeys.enumerated() {
                    if let filter = OutcomeKeys.matrixArguments(forKey: key) { jobs.append(.rerunMatrix(filter, key: key, index: index, repetition: repetition)) }
                }
            }
            runOnHost(jobs, into: &columns[0], rerun: true)
            for guest in guests {
                if ChildRegistry.shared.interruption != nil { break }
                if let failure = boot(kernels[guest.index], modules: modules[guest.index], jobs: jobs, into: &columns[guest.column], rerun: true, pass: "re-runs") {
                    report("re-runs: " + failure, label: columns[guest.column].label)
                    failures[columns[guest.column].label] = "re-runs: " + failure
                }
            }
            differing = differing.filter { !notRerun.contains($0) }
        }
        let differences = KernelComparison.classify(columns, keys: differing)
        let compared = KernelComparison.sameKeys(columns).count + differing.count + notRerun.count
        let formatter = ISO8601DateFormatter()
        let same = Set(KernelComparison.sameKeys(columns))
        let comparedKeys = Array(same) + differing + notRerun
        let kinds: [(String, (String) -> Bool)] = [("scenarios", { $0.hasPrefix("scenario ") }),
                                                   ("matrix cases", { $0.hasPrefix("matrix ") && !$0.contains(" alone ") }),
                                                   ("matrix baselines", { $0.hasPrefix("matrix ") && $0.contains(" alone ") })]
        let sameByKind = kinds.map { kind, matches in
            KernelsResult.KindCount(kind: kind, same: same.filter(matches).count, compared: comparedKeys.filter(matches).count)
        }.filter { $0.compared > 0 }
        let watchedResults = KernelComparison.classify(columns, keys: watched)
        var result = KernelsResult(date: formatter.string(from: Date()), toolVersion: CommandIndex.version, repeats: repeats, matrix: matrix, matrixFilter: matrixFilter.isEmpty ? nil : matrixFilter, columns: columns,
                             compared: compared, differences: differences, notRerun: notRerun, failures: failures)
        result.sameByKind = sameByKind
        result.watched = watchedResults
        return result
    }

    /// A failure's lines, every one escaped: a failure is raw text, and any line may hold what a
    /// guest's console said or a release taken from a folder's or package's name.
    func report(_ failure: String, label: String) {
        let lines = failure.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        console.err("\(UntrustedText.terminal(label)): FAILED: " + UntrustedText.terminal(lines.first ?? ""))
        for line in lines.dropFirst() { console.err(UntrustedText.terminal(line)) }
    }

    func hostColumn() -> KernelColumn {
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let procVersion = (try? String(contentsOfFile: "/proc/version", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        let label = KernelColumn.upstreamVersion(procVersion: procVersion, release: release) + " (host)"
        return KernelColumn(label: label, release: release, procVersion: procVersion, packageVersion: nil, isHost: true, how: "host")
    }

    /// Runs jobs here, one after the other, as child processes (so Ctrl-C kills them too).
    func runOnHost(_ jobs: [LabJob], into column: inout KernelColumn, rerun: Bool) {
        let output = folder + "/host"
        mkdir(output, 0o755)
        let started = Deadline.now()
        for job in jobs {
            if ChildRegistry.shared.interruption != nil { return }
            let arguments = job.arguments(output, scenarioFolder)
            let child: ChildProcess
            do throws(SystemError) {
                child = try ChildProcess(executable: executable, arguments: arguments, mergeStandardError: true, dieWithParent: true)
            } catch {
                column.problems.append("\(job.name): cannot start: \(error)")
                continue
            }
            child.closeStdin()
            var tail: [String] = []
            let deadline = Deadline.after(seconds: runTimeout)
            while let line = try? child.readLine(until: deadline) {
                console.err("\(UntrustedText.terminal(column.label)): \(job.name): \(UntrustedText.terminal(line))")
                tail = Array((tail + [line]).suffix(5))
            }
            let status = child.finish(until: Deadline.after(seconds: 10))
            let bytes = FileManager.default.contents(atPath: job.outputFile(in: output)).map(Array.init)
            record(job, status: (status >> 8) & 0xff, output: bytes, tail: tail, into: &column, rerun: rerun)
            unlink(job.outputFile(in: output))
        }
        if !rerun { column.runSeconds = Double(Deadline.now().nanoseconds - started.nanoseconds) / 1e9 }
    }

    /// Boots one kernel with `jobs`; returns why it gave no results, or nil.
    func boot(_ kernel: KernelSource, modules: [(String, [UInt8])], jobs: [LabJob], into column: inout KernelColumn, rerun: Bool, pass: String) -> String? {
        let initramfs = folder + "/initramfs.cpio"
        let planned = jobs.map { job in
            Initramfs.Job(name: job.name, output: job.outputFile(in: "/tmp"), arguments: job.arguments("/tmp", Initramfs.scenariosFolder))
        }
        let label = column.label
        console.err("\(UntrustedText.terminal(label)): building the initramfs (\(pass))")
        let size: Int
        switch Initramfs.build(at: initramfs, modules: modules, running: executable, scenarios: scenarioFiles, jobs: planned) {
        case .success(let bytes): size = bytes
        case .failure(let error): return error.message
        }
        defer { unlink(initramfs) }
        let console = self.console
        let bootFolder = folder + "/boot"
        mkdir(bootFolder, 0o755)
        var outcome: Result<GuestRun, KernelsError>
        repeat {
            unlink(bootFolder + "/results.port")
            let machine = GuestBoot(qemu: qemu, kernel: kernel, initramfs: initramfs, initramfsBytes: size, initPath: Initramfs.initPath(running: executable), folder: bootFolder, useKVM: useKVM,
                                    bootSeconds: useKVM ? min(bootTimeout, Self.kvmBootSeconds) : bootTimeout,
                                    runSeconds: runTimeout) { line in console.err("\(UntrustedText.terminal(label)): \(line)") }
            outcome = machine.run()
            guard useKVM, case .failure(let error) = outcome, error.beforeBoot, ChildRegistry.shared.interruption == nil else { break }
            console.err("\(UntrustedText.terminal(label)): the guest did not come up under KVM; booting it with software emulation (TCG) instead, and every later guest too")
            useKVM = false
        } while true
        switch outcome {
        case .failure(let error): return error.message
        case .success(let run):
            column.how = "qemu, " + (useKVM ? "KVM" : "TCG (software emulation)")
            if !rerun {
                column.release = run.release ?? column.release
                column.procVersion = run.procVersion
                column.label = KernelColumn.upstreamVersion(procVersion: run.procVersion, release: column.release)
                column.bootSeconds = run.bootSeconds
                column.runSeconds = run.runSeconds
            }
            for job in jobs {
                let result = run.results[job.name]
                record(job, status: result?.status ?? -1, output: result?.output, tail: run.notes, into: &column, rerun: rerun)
            }
            console.err("\(UntrustedText.terminal(column.label)): done (\(pass)): boot \(KernelsReport.seconds(run.bootSeconds)), jobs \(KernelsReport.seconds(run.runSeconds))")
            return nil
        }
    }

    /// Turns one job's JSON into outcomes on the column.
    func record(_ job: LabJob, status: Int32, output: [UInt8]?, tail: [String], into column: inout KernelColumn, rerun: Bool) {
        let outcomes: [String: String]?
        switch job.kind {
        case .scenarios: outcomes = output.flatMap(OutcomeKeys.scenarios)
        case .matrix: outcomes = output.flatMap(OutcomeKeys.matrix)
        }
        guard let outcomes else {
            column.problems.append("\(job.name): exit status \(status), no readable JSON" + (tail.isEmpty ? "" : ": " + tail.joined(separator: " / ")))
            console.err("\(UntrustedText.terminal(column.label)): \(job.name) gave no results (exit status \(status))"
                + (tail.isEmpty ? "" : ": " + UntrustedText.terminal(tail.joined(separator: " / "))))
            return
        }
        if rerun {
            for (key, outcome) in outcomes where job.keys?.contains(key) ?? true { column.reruns[key, default: []].append(outcome) }
        } else {
            column.outcomes.merge(outcomes) { first, _ in first }
        }
    }
}
