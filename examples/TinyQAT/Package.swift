// swift-tools-version:6.0
// A researcher's own experiment against the framework's libraries (issue 14, section 4): depends on the
// repository by path, builds a small CNN, trains it in FP32, then quantization-aware training at W4A4
// with learnable (LSQ) scales. `swift run -c release TinyQAT` from this folder; CI builds and runs it.
import PackageDescription

let package = Package(
    name: "TinyQAT",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "QAT", path: "../..")],
    targets: [
        .executableTarget(name: "TinyQAT", dependencies: [
            .product(name: "Kernels", package: "QAT"), .product(name: "Autodiff", package: "QAT"), .product(name: "NN", package: "QAT"),
            .product(name: "Optim", package: "QAT"), .product(name: "Quant", package: "QAT"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
