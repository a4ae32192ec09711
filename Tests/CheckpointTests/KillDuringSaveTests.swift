import XCTest
import Foundation
import Checkpoint
@testable import Files

/// kill -9 of a process in the middle of saving checkpoints, many times at random moments: the file
/// at the checkpoint path always loads, and it is the last complete save.
final class KillDuringSaveTests: XCTestCase {
    func testSIGKILLDuringSavesAlwaysLeavesTheLastCompleteCheckpoint() throws {
        let dir = NSTemporaryDirectory() + "qat-kill-save-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/last.h5"
        let exe = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
            .deletingLastPathComponent().appendingPathComponent("CheckpointWriter")
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: exe.path), "build the CheckpointWriter product first (swift build --build-tests)")
        // 512K floats: a 2 MB file, a few dozen ms per save in a debug build (most of it building the file
        // in memory; the temporary file exists only while it is written and fsynced).
        let elements = 1 << 19
        var kills = 0, midWrite = 0, previous: Int64 = 0
        for round in 0..<20 {
            let p = Process()
            p.executableURL = exe
            p.arguments = [path, "\(elements)"]
            let out = Pipe()
            p.standardOutput = out; p.standardError = FileHandle.nullDevice
            try p.run()
            // Wait for this process's first complete save, then kill it: in even rounds at a random
            // moment, in odd rounds as soon as its temporary file appears (plus up to 1 ms), so that
            // many kills hit the write itself.
            var text = ""
            let reader = out.fileHandleForReading
            while !text.contains("saved") {
                let d = reader.availableData
                if d.isEmpty { break }
                text += String(decoding: d, as: UTF8.self)
            }
            var delay = Double.random(in: 0..<0.1)
            if round % 2 == 1 {
                let deadline = Date().addingTimeInterval(2)
                while Date() < deadline && !Temporaries.entries(of: dir, prefix: ".last.h5.tmp-").contains(where: { Temporaries.parse($0)?.owner.pid == p.processIdentifier }) {}
                delay = Double.random(in: 0..<0.001)
            }
            Thread.sleep(forTimeInterval: delay)
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            text += String(decoding: reader.readDataToEndOfFile(), as: UTF8.self)
            XCTAssertEqual(p.terminationReason, .uncaughtSignal, text)
            kills += 1
            // Killed while its temporary file was being written (before the rename).
            if try FileManager.default.contentsOfDirectory(atPath: dir).contains(where: { Temporaries.parse($0)?.owner.pid == p.processIdentifier }) { midWrite += 1 }
            // The last save the process reported is in place; one more may have been renamed into place
            // before the kill stopped it from printing.
            guard let reported = text.split(separator: "\n").compactMap({ Int64($0.dropFirst("saved ".count)) }).max() else {
                return XCTFail("kill \(kills): the writer reported no save: \(text)")
            }
            let c: Checkpoint
            do { c = try Checkpoint.load(from: path) } catch {
                return XCTFail("kill \(kills) after \(delay) s: the surviving checkpoint does not load: \(error)")
            }
            XCTAssertTrue(c.step == reported || c.step == reported + 1, "kill \(kills): file at step \(c.step), last reported save \(reported)")
            XCTAssertGreaterThan(c.step, previous)
            XCTAssertEqual(c.params["w"]?.values.count, elements)
            XCTAssertTrue(c.params["w"]?.values.allSatisfy { $0 == Float(c.step) } ?? false, "kill \(kills): values of another save in step \(c.step)'s file")
            previous = c.step
        }
        XCTAssertGreaterThanOrEqual(midWrite, 3, "\(kills) kills, only \(midWrite) during a write: the test hardly tested the write")
        // Each start removed the temporary file its killed predecessor left: at most the last one remains.
        let left = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0 != "last.h5" }
        XCTAssertLessThanOrEqual(left.count, 1, "\(left)")
        print("KillDuringSaveTests: \(kills) kills, \(midWrite) while a temporary file was being written; last step \(previous)")
    }
}
