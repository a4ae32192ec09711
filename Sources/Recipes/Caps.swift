/// Upper bounds on recipe values that size an allocation or a loop. A value past its cap would make
/// the run allocate without bound or overflow a step count after its directory exists; the field
/// table (`Field.int(..., cap:)`) refuses it while reading, naming the key, the line, the value and
/// the cap. The numbers are documented in docs/RECIPES.md ("Caps"); the synthetic-data ones equal
/// `SyntheticAircraft.Config`'s and `Chips`' in Datasets (a test in TrainingTests keeps them equal).
public struct Cap: Sendable, Equatable {
    public let max: Int
    /// What the value sizes, for the message.
    public let what: String
    public init(_ max: Int, _ what: String) { self.max = max; self.what = what }

    /// Network input side in pixels (an input batch holds batch x 3 x side^2 floats).
    public static let inputSize = Cap(2048, "network input side in pixels")
    /// Images per training or evaluation batch.
    public static let batch = Cap(4096, "images per batch")
    /// Pixels of one input batch, batch x input_size^2 (2^26: e.g. 64 images of 1024 px, 65,536 of 32 px;
    /// 768 MiB of float input before any activation).
    public static let batchPixels = 1 << 26
    public static let synthImages = Cap(100_000, "synthetic scenes")
    public static let synthSize = Cap(2048, "synthetic scene side in pixels")
    public static let chipSize = Cap(256, "chip side in pixels")
    /// Bytes a split's chips may take: the cap `HDF5ClassificationSource` reads (4 GiB). The bound
    /// assumes the most aircraft a synthetic scene holds (`synthAircraftPerScene`) in every scene.
    public static let chipBytes = 1 << 32
    public static let synthAircraftPerScene = 8
    public static let epochs = Cap(1_000_000, "epochs")
    /// Optimizer steps of a run, also `epochs` x batches per epoch.
    public static let steps = Cap(1_000_000_000, "optimizer steps")
    public static let threads = Cap(1024, "threads")
    public static let dotaTile = Cap(8192, "DOTA patch side in pixels")
    public static let fpnChannels = Cap(1024, "FPN channels")
}
