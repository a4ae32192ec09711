// swift-tools-version:6.0
import PackageDescription

// Layers (see docs/DESIGN.md): qat -> Training (recipes, runs, sweeps, export) / Bench -> Quant, NN, Optim ->
// Autodiff -> Kernels -> CBLAS. Recipes (YAML through Yams) depends on nothing of ours.
// CHDF5 is the HDF5 binding the Checkpoint layer builds on. Files (atomic writes, ownership locks, stale
// temporaries, output protection) sits under everything that writes a file; UserPaths reads the files
// users name (recipes, sweeps, annotations, images) with clear messages.
// Release builds target Haswell-level x86 (AVX2 + FMA: every x86 server since 2013 and this project's machines);
// without it Swift emits SSE2 code and the SIMD8 kernels run 4 lanes at a time. Debug builds (the
// tests) stay at the baseline ISA.
let optimize: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-target-cpu", "haswell"], .when(platforms: [.linux], configuration: .release))]

let package = Package(
    name: "QAT",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "qat", targets: ["qat"]),
        // The layers a researcher's own package builds on (examples/TinyQAT depends on them by path).
        .library(name: "Kernels", targets: ["Kernels"]),
        .library(name: "Autodiff", targets: ["Autodiff"]),
        .library(name: "NN", targets: ["NN"]),
        .library(name: "Optim", targets: ["Optim"]),
        .library(name: "Quant", targets: ["Quant"]),
        .library(name: "Detection", targets: ["Detection"]),
        .library(name: "Datasets", targets: ["Datasets"]),
        .library(name: "Evaluation", targets: ["Evaluation"]),
        .library(name: "Checkpoint", targets: ["Checkpoint"]),
        .library(name: "Recipes", targets: ["Recipes"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "ONNX", targets: ["ONNX"]),
        .library(name: "Int8Engine", targets: ["Int8Engine"]),
        .library(name: "Prune", targets: ["Prune"]),
        .library(name: "DataParallel", targets: ["DataParallel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        // ONNX export: the runtime library only; Sources/ONNX/onnx.pb.swift is generated once and committed
        // (scripts/onnx/generate.sh), so no build needs protoc or the plugin.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg-dev"])]),
        .target(name: "Files", dependencies: ["UserPaths"], swiftSettings: optimize),
        .target(name: "Kernels", dependencies: ["CBLAS"], swiftSettings: optimize),
        // UserPaths: reading files the user names and explaining why a path cannot be read or written.
        .target(name: "UserPaths"),
        // "Datasets", not the architecture sketch's "Data": a module named Data collides with Foundation.Data.
        .target(name: "Datasets", dependencies: ["CPNG", "CJPEG", "CHDF5", "HDF5", "Files", "Kernels", "UserPaths"], swiftSettings: optimize),
        .target(name: "Autodiff", dependencies: ["Kernels"], swiftSettings: optimize),
        .target(name: "NN", dependencies: ["Kernels", "Autodiff"], swiftSettings: optimize),
        .target(name: "Optim", dependencies: ["Kernels", "Autodiff", "NN"], swiftSettings: optimize),
        .target(name: "Quant", dependencies: ["Kernels", "Autodiff", "NN", "Optim"], swiftSettings: optimize),
        .target(name: "HDF5", dependencies: ["CHDF5", "Files"], swiftSettings: optimize),
        .target(name: "Checkpoint", dependencies: ["CHDF5", "HDF5", "Files", "UserPaths", "Kernels", "Autodiff", "NN", "Optim"], swiftSettings: optimize),
        .target(name: "Bench", dependencies: ["Kernels", "Autodiff", "NN", "Optim", "Quant", "Datasets", "Detection", "Int8Engine", "ONNX"], swiftSettings: optimize),
        // Detection: boxes, anchors, matching, box coding, FPN, heads, losses, post-processing, the detector.
        // On NN only: it knows nothing of recipes or files (torchvision models do not import references/).
        .target(name: "Detection", dependencies: ["Kernels", "Autodiff", "NN"], swiftSettings: optimize),
        // Evaluation: COCO (pycocotools) and VOC detection metrics on plain arrays, COCO results files.
        .target(name: "Evaluation", dependencies: ["Datasets", "Files"], swiftSettings: optimize),
        // ONNX: the ONNX schema (generated code) and the exporter: every layer and backbone block writes
        // itself as nodes (ONNXExportable), quantizers as QuantizeLinear/DequantizeLinear (QDQ).
        .target(name: "ONNX", dependencies: ["Kernels", "Autodiff", "NN", "Quant", "Detection", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                exclude: ["schema"], swiftSettings: optimize),
        // The int8 inference engine: CInt8's C kernels (AVX-512 VNNI or AVX2 chosen at run time, portable C
        // otherwise; no build flag) under Int8Engine's lowering of quantized models.
        .target(name: "CInt8", path: "Sources/CInt8", cSettings: [.unsafeFlags(["-O3", "-ffp-contract=off"])]),
        .target(name: "Int8Engine", dependencies: ["CInt8", "Kernels", "Autodiff", "NN", "Quant", "Detection"], swiftSettings: optimize),
        // Structured pruning: channel groups from the modules' ChannelFlow, importance criteria, removal.
        .target(name: "Prune", dependencies: ["Kernels", "Autodiff", "NN"], swiftSettings: optimize),
        // Data-parallel training over Open MPI: CMPI loads libmpi at run time (only in a process mpirun
        // started, so one process needs neither MPI nor its launcher); DataParallel has the world, DDP's
        // gradient buckets and synchronised BatchNorm.
        .target(name: "CMPI", path: "Sources/CMPI"),
        .target(name: "DataParallel", dependencies: ["CMPI", "Autodiff", "NN"], swiftSettings: optimize),
        .target(name: "Recipes", dependencies: ["UserPaths", .product(name: "Yams", package: "Yams")]),
        .target(name: "Training", dependencies: ["Recipes", "Files", "Kernels", "Autodiff", "NN", "Optim", "Quant", "Checkpoint", "Datasets", "Detection", "Evaluation", "UserPaths", "ONNX", "Int8Engine", "Prune", "DataParallel"],
                swiftSettings: optimize),
        .executableTarget(name: "qat", dependencies: [
            "Kernels", "Autodiff", "NN", "Checkpoint", "Bench", "Recipes", "Training", "Evaluation", "Datasets", "Files", "UserPaths", "HDF5", "Prune", "DataParallel",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: optimize),
        // A process that saves checkpoints in a loop, for the test that kills it mid-save (CheckpointTests).
        .executableTarget(name: "CheckpointWriter", dependencies: ["Checkpoint", "Files"], path: "Tests/CheckpointWriter"),
        .testTarget(name: "FilesTests", dependencies: ["Files"]),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels"]),
        .testTarget(name: "UserPathsTests", dependencies: ["UserPaths"]),
        .testTarget(name: "AutodiffTests", dependencies: ["Autodiff", "Kernels"], exclude: ["Fixtures"]),
        .testTarget(name: "CHDF5Tests", dependencies: ["CHDF5"]),
        .testTarget(name: "HDF5Tests", dependencies: ["HDF5", "CHDF5", "Files"]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "CheckpointWriter", "Files", "CHDF5", "NN", "Optim", "Quant", "Autodiff", "Kernels"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "BenchTests", dependencies: ["Bench"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "Files", "Kernels", "HDF5", "CHDF5"]),
        .testTarget(name: "NNTests", dependencies: ["NN", "Autodiff", "Kernels"]),
        .testTarget(name: "QuantTests", dependencies: ["Quant", "NN", "Autodiff", "Kernels"], exclude: ["Fixtures"]),
        .testTarget(name: "OptimTests", dependencies: ["Optim", "NN", "Autodiff", "Kernels"]),
        .testTarget(name: "DetectionTests", dependencies: ["Detection", "NN", "Autodiff", "Kernels", "Optim", "Quant", "Prune"], exclude: ["Fixtures"]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "Datasets"], exclude: ["Fixtures"]),
        .testTarget(name: "RecipesTests", dependencies: ["Recipes"], exclude: ["Fixtures"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Files", "Recipes", "Checkpoint", "Datasets", "Kernels"]),
        .testTarget(name: "Int8EngineTests", dependencies: ["Int8Engine", "CInt8", "NN", "Quant", "Autodiff", "Kernels", "Detection"]),
        .testTarget(name: "DataParallelTests", dependencies: ["DataParallel", "NN", "Autodiff", "Kernels"]),
        .testTarget(name: "PruneTests", dependencies: ["Prune", "NN", "Autodiff", "Kernels"]),
        .testTarget(name: "ONNXTests", dependencies: ["ONNX", "NN", "Quant", "Detection", "Autodiff", "Kernels"]),
        .testTarget(name: "qatTests", dependencies: ["qat", "Files"], exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
