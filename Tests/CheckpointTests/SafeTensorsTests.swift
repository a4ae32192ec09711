import XCTest
import Foundation
import Kernels
import Autodiff
import NN
@testable import Checkpoint

/// The weights formula of scripts/golden/torchvision_weights.py: both sides make the same tensors.
enum FormulaWeights {
    static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    static func uniform(_ name: String, _ n: Int) -> [Float] {
        let seed = fnv1a(name)
        return (0..<n).map { i in
            var z = seed &+ UInt64(i) &+ 0x9E37_79B9_7F4A_7C15
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Float(Double(z >> 40) / 16_777_216 * 2 - 1)
        }
    }

    static func values(_ name: String, _ shape: [Int]) -> [Float] {
        let u = uniform(name, shape.reduce(1, *))
        let last = name.split(separator: ".").last.map(String.init) ?? name
        if shape.count >= 2 {
            let scale = Float((3.0 / Double(shape.dropFirst().reduce(1, *))).squareRoot())
            return u.map { $0 * scale }
        }
        switch last {
        case "running_var": return u.map { 1 + 0.5 * $0 }
        case "weight": return u.map { 1 + Float(0.2) * $0 }
        default: return u.map { Float(0.1) * $0 }
        }
    }
}

final class SafeTensorsTests: XCTestCase {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    func tmp(_ name: String) -> String {
        let dir = NSTemporaryDirectory() + "safetensors-\(getpid())-\(name)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// torchvision's MobileNetV2, MobileNetV3 small / large and ResNet-18: their state dicts (names,
    /// shapes) with formula weights, written as safetensors, imported strictly into our backbones, give
    /// torchvision's eval-mode logits within 1e-4 of the largest: same layers, same paths, same maths.
    func testTorchvisionWeightsGiveTorchvisionOutputs() throws {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("torchvision_weights.json"))) as! [String: Any]
        let cases = json["cases"] as! [[String: Any]]
        XCTAssertEqual(cases.count, 4)
        let dir = tmp("parity")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for c in cases {
            let name = c["name"] as! String, ctor = c["ctor"] as! [String: Any]
            var file = SafeTensors(metadata: ["format": "pt"])
            for k in c["keys"] as! [[Any]] {
                let key = k[0] as! String, shape = (k[1] as! [NSNumber]).map(\.intValue), dtype = k[2] as! String
                if dtype == "int64" { file.tensors[key] = SafeTensors.Tensor(shape: shape, integers: [Int64](repeating: 0, count: shape.reduce(1, *))) }
                else { file.tensors[key] = SafeTensors.Tensor(shape: shape, values: FormulaWeights.values(key, shape)) }
            }
            let path = dir + "/\(name).safetensors"
            try file.write(to: path, replacing: .anything)
            let weights = try Checkpoint.fromTorch(try SafeTensors.read(from: path), file: path)
            var rng = RNG(seed: 1)
            let model = try Backbones.make(ctor["backbone"] as! String, width: (ctor["width"] as! NSNumber).doubleValue,
                                           numClasses: (ctor["num_classes"] as! NSNumber).intValue, rng: &rng)
            let report = try weights.apply(to: model, strict: true, file: path)
            XCTAssertEqual(report.loaded.count, (c["keys"] as! [[Any]]).filter { ($0[2] as! String) != "int64" }.count, name)
            model.eval()
            let shape = (c["input_shape"] as! [NSNumber]).map(\.intValue)
            let x = Tensor(shape: shape, scalars: FormulaWeights.uniform("input", shape.reduce(1, *)))
            let y = noGrad { model(x) }.scalars
            let expected = (c["output"] as! [NSNumber]).map(\.floatValue)
            XCTAssertEqual(y.count, expected.count, name)
            let scale = expected.map(abs).max()!
            let worst = zip(y, expected).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(worst, 1e-4 * scale, "\(name): largest difference \(worst), output scale \(scale)")
        }
    }

    /// A file `safetensors.torch.save_file` wrote (torchvision's MobileNetV3-small x0.5 state dict):
    /// every tensor reads back as the formula made it, num_batches_tracked as I64.
    func testReadsAFilePyTorchWrote() throws {
        let path = fixtures.appendingPathComponent("mobilenet_v3_small_x0.5.safetensors").path
        let s = try SafeTensors.read(from: path)
        XCTAssertEqual(s.metadata, ["format": "pt"])
        XCTAssertEqual(s.tensors.count, 244)
        for (name, t) in s.tensors {
            if name.hasSuffix("num_batches_tracked") {
                XCTAssertEqual(t.dtype, .i64, name); XCTAssertEqual(t.integers, [0], name); continue
            }
            XCTAssertEqual(t.dtype, .f32, name)
            XCTAssertEqual(t.values, FormulaWeights.values(name, t.shape), name)
        }
        // And it loads strictly into our MobileNetV3-small x0.5.
        var rng = RNG(seed: 0)
        let model = try Backbones.make("mobilenet_v3_small", width: 0.5, numClasses: 10, rng: &rng)
        XCTAssertNoThrow(try Checkpoint.fromTorch(s, file: path).apply(to: model, strict: true, file: path))
        // Written back by us, read back equal (names, shapes, values, metadata).
        let dir = tmp("roundtrip")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try s.write(to: dir + "/again.safetensors")
        XCTAssertEqual(try SafeTensors.read(from: dir + "/again.safetensors"), s)
    }

    /// Our export (`Checkpoint.torchSafeTensors`) names BatchNorm buffers as PyTorch does and imports back
    /// to the same checkpoint.
    func testExportUsesTorchNamesAndRoundTrips() throws {
        var rng = RNG(seed: 3)
        let model = try Backbones.make("mobilenet_v2", width: 0.25, numClasses: 5, rng: &rng)
        let c = Checkpoint.capture(model: model)
        let s = c.torchSafeTensors(metadata: ["format": "pt"])
        XCTAssertNotNil(s.tensors["features.1.conv.0.1.running_mean"])
        XCTAssertNotNil(s.tensors["features.1.conv.0.1.running_var"])
        XCTAssertNil(s.tensors["features.1.conv.0.1.runningMean"])
        let back = try Checkpoint.fromTorch(s, file: "(memory)")
        XCTAssertEqual(back.params, c.params)
        XCTAssertEqual(back.buffers, c.buffers)
    }

    /// Damaged and unsupported files: an error naming the file and what is wrong, never a crash.
    func testBadFilesGiveClearErrors() throws {
        let dir = tmp("bad")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func header(_ json: String, data: [UInt8] = []) -> Data {
            var d = Data()
            withUnsafeBytes(of: UInt64(json.utf8.count).littleEndian) { d.append(contentsOf: $0) }
            d.append(contentsOf: Array(json.utf8)); d.append(contentsOf: data)
            return d
        }
        let cases: [(String, Data, String)] = [
            ("short", Data([1, 2, 3]), "shorter than the 8-byte header size"),
            ("huge header", header("{}").prefix(8) + Data([0x7b]), "exceeds the file"),
            ("not json", header("{nope"), "not a JSON object"),
            ("bool dtype", header("{\"a\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]}}", data: [1]), "has dtype BOOL"),
            ("short data", header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", data: [0, 0, 0, 0]), "needs 8 bytes"),
            ("outside", header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", data: [0, 0, 0, 0]), "outside the 4-byte buffer"),
            ("overlap", header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                               data: [0, 0, 0, 0]), "overlaps"),
            ("gap", header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", data: [UInt8](repeating: 0, count: 8)), "a gap before tensor 'a'"),
            ("trailing", header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", data: [UInt8](repeating: 0, count: 6)), "2 bytes after"),
            ("negative", header("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", data: [0, 0, 0, 0]), "non-negative"),
        ]
        for (name, data, expected) in cases {
            let path = dir + "/\(name.replacingOccurrences(of: " ", with: "_")).safetensors"
            try data.write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try SafeTensors.read(from: path), name) { e in
                XCTAssertTrue("\(e)".contains(expected) && "\(e)".contains(path), "\(name): \(e)")
            }
        }
        XCTAssertThrowsError(try SafeTensors.read(from: dir + "/missing.safetensors")) { XCTAssertTrue("\($0)".contains("missing.safetensors")) }
        // Integer weights and non-finite values are refused by the import, naming the tensor.
        XCTAssertThrowsError(try Checkpoint.fromTorch(SafeTensors(tensors: ["fc.weight": .init(shape: [1], integers: [3])]), file: "w.safetensors")) {
            XCTAssertTrue("\($0)".contains("fc.weight") && "\($0)".contains("I64"), "\($0)")
        }
        XCTAssertThrowsError(try Checkpoint.fromTorch(SafeTensors(tensors: ["fc.bias": .init(shape: [2], values: [0, .nan])]), file: "w.safetensors")) {
            XCTAssertTrue("\($0)".contains("fc.bias") && "\($0)".contains("nan"), "\($0)")
        }
    }
}
