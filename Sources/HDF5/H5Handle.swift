import CHDF5

/// One HDF5 object id and the call that closes it. `close()` is idempotent, so an object closed
/// explicitly (in the order HDF5 needs: datasets, groups, then the file) is never closed twice by
/// `deinit`.
public final class H5Handle {
    public private(set) var id: hid_t
    private let closer: (hid_t) -> herr_t

    public init(_ id: hid_t, close: @escaping (hid_t) -> herr_t) { self.id = id; self.closer = close }

    public var isOpen: Bool { id >= 0 }

    /// Closes the object once; true when it was open and HDF5 closed it without error.
    @discardableResult
    public func close() -> Bool {
        guard id >= 0 else { return false }
        let status = closer(id)
        id = -1
        return status >= 0
    }

    deinit { close() }
}
