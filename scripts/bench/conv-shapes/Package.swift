// swift-tools-version:6.0
import PackageDescription
let package = Package(name: "ConvShapes", platforms: [.macOS(.v14)],
    dependencies: [.package(name: "QAT", path: "../../..")],
    targets: [.executableTarget(name: "ConvShapes", dependencies: [.product(name: "Kernels", package: "QAT"), .product(name: "Autodiff", package: "QAT"), .product(name: "NN", package: "QAT")],
                                swiftSettings: [.unsafeFlags(["-Ounchecked"])])],
    swiftLanguageModes: [.v6])
