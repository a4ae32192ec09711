// A process that saves checkpoints in a loop until it is killed, for
// `CheckpointTests.KillDuringSaveTests`. Usage: CheckpointWriter FILE ELEMENTS
//
// Every save holds one parameter of ELEMENTS values, all equal to the save's step, so a file that
// loads and is consistent (every value equal to its step attribute) is one complete save. It starts
// after the step of the checkpoint already at FILE, removes the temporaries that a killed predecessor
// left (a new start is when a process cleans up after a dead one), and prints "saved STEP" after each
// save is in place.
import Foundation
import Checkpoint
import Files

let args = CommandLine.arguments
guard args.count == 3, let elements = Int(args[2]), elements > 0 else {
    FileHandle.standardError.write(Data("usage: CheckpointWriter FILE ELEMENTS\n".utf8))
    exit(64)
}
let path = args[1]
Temporaries.removeStale(in: (path as NSString).deletingLastPathComponent)
var step: Int64 = 1
if FileManager.default.fileExists(atPath: path) {
    do { step = try Checkpoint.load(from: path).step + 1 } catch {
        FileHandle.standardError.write(Data("cannot load \(path): \(error)\n".utf8))
        exit(1)
    }
}
while true {
    var c = Checkpoint()
    c.step = step
    c.params["w"] = .init(shape: [elements], values: [Float](repeating: Float(step), count: elements))
    do { try c.save(to: path) } catch {
        FileHandle.standardError.write(Data("save \(step) failed: \(error)\n".utf8))
        exit(1)
    }
    print("saved \(step)")
    fflush(nil)
    step += 1
}
