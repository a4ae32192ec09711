// libFuzzer harness: bytes as a COCO annotation file through COCODataset.parse (JSON syntax, decoding,
// validation), strict and with skipInvalid, compiled against the Datasets module by scripts/fuzz.sh.
// Beyond "no crash", it traps (libFuzzer then saves the input) when
// - anything but DataError escapes;
// - a strict parse succeeds but the skipping one drops annotations, or the skipping one keeps an
//   annotation that a strict parse of the kept set refuses (validation must be one function of the data);
// - a parsed dataset does not survive JSON encoding and parsing again unchanged (what Chips.write and
//   qat data synth rely on when they write COCO files the readers load back).
import Foundation
import Datasets

private struct File: Codable {
    var images: [COCODataset.ImageInfo]
    var annotations: [COCODataset.Annotation]
    var categories: [COCODataset.Category]
}

private func encoded(_ d: COCODataset) -> Data {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys]
    return try! enc.encode(File(images: d.images, annotations: d.annotations, categories: d.categories))
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCOCO(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    var strict: COCODataset? = nil
    do { strict = try COCODataset.parse(bytes, file: "fuzz.json") } catch is DataError {} catch {
        fatalError("COCODataset.parse threw \(type(of: error)), not DataError: \(error)")
    }
    do {
        let (kept, skipped) = try COCODataset.parse(bytes, file: "fuzz.json", skipInvalid: true)
        if strict != nil && (!skipped.isEmpty || kept != strict) { fatalError("a valid file lost annotations when skipping: \(skipped)") }
        // What skipping keeps is valid by itself.
        let again: COCODataset
        do { again = try COCODataset.parse(encoded(kept), file: "kept.json") } catch {
            fatalError("the annotations kept by skipInvalid do not load strictly: \(error)")
        }
        if again != kept { fatalError("a dataset does not survive encoding and parsing again") }
    } catch is DataError {
        if strict != nil { fatalError("strict parse succeeded, skipInvalid failed") }
    } catch {
        fatalError("COCODataset.parse(skipInvalid:) threw \(type(of: error)), not DataError: \(error)")
    }
    return 0
}
