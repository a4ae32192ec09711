import XCTest
@testable import Recipes

/// Size caps (`Cap`), empty recipes and empty `--set` values, and where overrides are blamed.
final class CapsTests: XCTestCase {
    var dir: String!
    override func setUp() {
        dir = NSTemporaryDirectory() + "recipe-caps-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ name: String, _ text: String) -> String {
        let p = dir + "/" + name
        try! text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    func error(_ body: () throws -> Any) -> RecipeError? {
        do { _ = try body(); return nil } catch let e as RecipeError { return e } catch { XCTFail("unexpected \(error)"); return nil }
    }

    /// Each capped key: the value at its cap loads, one past it is refused naming the key, the file and
    /// line, the value and the cap.
    func testEveryCappedKeyIsRefusedPastItsCapWithKeyLineValueAndCap() throws {
        let cases: [(String, Cap, String)] = [
            ("data.input_size", .inputSize, "task: detection\ndata: {input_size: %d}\ntrain: {batch: 2}\neval: {batch: 2}"),
            ("data.synth.images", .synthImages, "data:\n  synth: {images: %d, chip_size: 8}"),
            ("data.synth.size", .synthSize, "data:\n  synth: {size: %d}"),
            ("data.synth.chip_size", .chipSize, "data:\n  synth: {chip_size: %d}"),
            ("data.dota.tile", .dotaTile, "data:\n  dota: {tile: %d}"),
            ("train.epochs", .epochs, "train: {epochs: %d}"),
            ("train.steps", .steps, "train: {steps: %d}"),
            ("train.batch", .batch, "data: {input_size: 8}\ntrain: {batch: %d}"),
            ("eval.batch", .batch, "data: {input_size: 8}\neval: {batch: %d}"),
            ("threads", .threads, "threads: %d"),
            ("detector.fpn.channels", .fpnChannels, "task: detection\ndetector:\n  fpn: {channels: %d}"),
        ]
        for (key, cap, template) in cases {
            let atCap = write("ok.yaml", "name: x\n" + String(format: template, cap.max) + "\n")
            XCTAssertNoThrow(try Recipe.load(path: atCap), key)
            let over = write("over.yaml", "name: x\n" + String(format: template, cap.max + 1) + "\n")
            let e = error { try Recipe.load(path: over) }
            XCTAssertEqual(e?.key, key)
            XCTAssertEqual(e?.origin?.file, over, key)
            XCTAssertNotNil(e?.origin?.line, key)
            let text = e?.description ?? ""
            XCTAssertTrue(text.contains("\(cap.max + 1) is above the cap of \(cap.max) (\(cap.what)); use at most \(cap.max)"), text)
        }
        // A number past Int64 is named as such, not as "not an integer".
        let huge = error { try Recipe.load(path: self.write("h.yaml", "train: {epochs: 92233720368547758070}\n")) }
        XCTAssertTrue(huge?.description.contains("does not fit a 64-bit integer; the cap is \(Cap.epochs.max)") ?? false, "\(String(describing: huge))")
        // --set values go through the same table.
        let set = error { try Recipe.load(path: self.write("s.yaml", "name: s\n"), overrides: ["train.epochs=9223372036854775807"]) }
        XCTAssertEqual(set?.key, "train.epochs")
        XCTAssertTrue(set?.description.contains("above the cap of \(Cap.epochs.max)") ?? false)
    }

    /// Keys within their caps can still size a giant batch or chips file together.
    func testCrossKeyCapsBatchPixelsAndChipBytes() throws {
        let e = error { try Recipe.load(path: self.write("b.yaml", "data: {input_size: 2048}\ntrain: {batch: 32}\n")) }
        XCTAssertEqual(e?.key, "train.batch")
        XCTAssertEqual(e?.origin?.line, 2)
        XCTAssertTrue(e?.description.contains("32 images of 2048x2048 px = 134217728 pixels per batch, above the cap of \(Cap.batchPixels)") ?? false, "\(String(describing: e))")
        XCTAssertTrue(e?.description.contains("lower train.batch to at most 16") ?? false, "\(String(describing: e))")
        let ev = error { try Recipe.load(path: self.write("e.yaml", "data: {input_size: 1024}\ntrain: {batch: 8}\n")) }
        XCTAssertEqual(ev?.key, "eval.batch", "eval.batch (default 128) x 1024^2 is over the cap too")
        XCTAssertNoThrow(try Recipe.load(path: self.write("ok.yaml", "data: {input_size: 1024}\ntrain: {batch: 64}\neval: {batch: 64}\n")))

        let chips = error { try Recipe.load(path: self.write("c.yaml", "data:\n  synth: {images: 100000, chip_size: 64}\n")) }
        XCTAssertEqual(chips?.key, "data.synth.chip_size")
        XCTAssertTrue(chips?.description.contains("above the cap of \(Cap.chipBytes) bytes (4 GiB)") ?? false, "\(String(describing: chips))")
        XCTAssertNoThrow(try Recipe.load(path: self.write("c2.yaml", "data:\n  synth: {images: 100000, chip_size: 32}\n")))
    }

    func testEmptyRecipeAndEmptySetValueAreRefused() throws {
        for text in ["", "# only a comment\n", "---\n"] {
            let e = error { try Recipe.load(path: self.write("empty.yaml", text)) }
            XCTAssertTrue(e?.description.contains("empty.yaml: is empty (no keys)") ?? false, "\(text): \(String(describing: e))")
        }
        // An empty base is blamed with the file that names it.
        _ = write("blank.yaml", "")
        let viaBase = error { try Recipe.load(path: self.write("child.yaml", "base: blank.yaml\n")) }
        XCTAssertTrue(viaBase?.description.contains("named by 'base:'") ?? false, "\(String(describing: viaBase))")
        // An explicit empty mapping is a deliberate "all defaults".
        XCTAssertNoThrow(try Recipe.load(path: write("braces.yaml", "{}\n")))

        let ok = write("ok.yaml", "name: ok\n")
        for set in ["train.epochs=", "train.epochs= ", "quant.init_from="] {
            let e = error { try Recipe.load(path: ok, overrides: [set]) }
            XCTAssertEqual(e?.origin?.file, "--set")
            XCTAssertTrue(e?.description.contains("has no value") ?? false, "\(set): \(String(describing: e))")
        }
        // null is an explicit value: it resets an optional key.
        XCTAssertNil(try Recipe.load(path: ok, overrides: ["quant.init_from=/x.h5", "quant.init_from=null"]).quant.initFrom)
    }

    /// Maps created by an override carry the override's origin, so an unknown first key is blamed on
    /// the sweep file's line rather than on `--set`.
    func testMapsCreatedByAnOverrideCarryItsOrigin() throws {
        let at = Origin(file: "sweep.yaml", line: 4, column: 3)
        let t = Tree.map([], Origin(file: "r.yaml")).setting(["trian", "epochs"], to: .scalar("2", quoted: false, at), origin: at)
        let e = error { try Recipe(tree: t) }
        XCTAssertEqual(e?.origin, at)
        XCTAssertEqual(e?.key, "trian")
        XCTAssertEqual(Tree.map([], Origin(file: "r.yaml")).setting(["a", "b"], to: .null(at))["a"]?.origin, Origin(file: "--set"))
    }

    func testDirectoriesAndSymlinkLoopsAreNamedAsSuch() throws {
        let d = error { try Recipe.load(path: self.dir) }
        XCTAssertTrue(d?.description.contains("is a directory") ?? false, "\(String(describing: d))")
        try FileManager.default.createSymbolicLink(atPath: dir + "/l1.yaml", withDestinationPath: dir + "/l2.yaml")
        try FileManager.default.createSymbolicLink(atPath: dir + "/l2.yaml", withDestinationPath: dir + "/l1.yaml")
        let loop = error { try Recipe.load(path: self.dir + "/l1.yaml") }
        XCTAssertTrue(loop?.description.contains("symlink loop") ?? false, "\(String(describing: loop))")
        XCTAssertFalse(loop?.description.contains("not found") ?? true)
        try Data([0xC3, 0x28]).write(to: URL(fileURLWithPath: dir + "/bin.yaml"))
        let bin = error { try Recipe.load(path: self.dir + "/bin.yaml") }
        XCTAssertTrue(bin?.description.contains("is not UTF-8 text") ?? false, "\(String(describing: bin))")
    }
}
