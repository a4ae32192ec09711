import XCTest
@testable import Kernels

final class BLASDispatchTests: XCTestCase {
    func testPreferredCoreType() {
        let avx512: Set<String> = ["avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512dq"]
        XCTAssertEqual(BLASDispatch.preferredCoreType(cpuFlags: avx512, current: "Prescott", environment: [:]), "SkylakeX")
        XCTAssertEqual(BLASDispatch.preferredCoreType(cpuFlags: ["avx2", "fma", "sse4_2"], current: "Prescott", environment: [:]), "Haswell")
        XCTAssertNil(BLASDispatch.preferredCoreType(cpuFlags: ["sse4_2"], current: "Prescott", environment: [:]))
        // OpenBLAS recognised the CPU: its choice stands.
        XCTAssertNil(BLASDispatch.preferredCoreType(cpuFlags: avx512, current: "Zen", environment: [:]))
        XCTAssertNil(BLASDispatch.preferredCoreType(cpuFlags: avx512, current: "SkylakeX", environment: [:]))
        // The user's setting and the opt-out win.
        XCTAssertNil(BLASDispatch.preferredCoreType(cpuFlags: avx512, current: "Prescott", environment: ["OPENBLAS_CORETYPE": "Haswell"]))
        XCTAssertNil(BLASDispatch.preferredCoreType(cpuFlags: avx512, current: "Prescott", environment: ["QAT_BLAS_DISPATCH": "0"]))
    }

    func testCoreNameAndFlagsAreReadable() {
        XCTAssertFalse(BLASDispatch.coreName.isEmpty)
        #if os(Linux)
        XCTAssertTrue(BLASDispatch.cpuFlags().contains("sse2"))
        #endif
    }
}
