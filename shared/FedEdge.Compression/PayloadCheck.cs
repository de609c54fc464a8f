namespace FedEdge.Compression;

/// <summary>Why an encoded payload (codec payload or error-feedback state) was refused.</summary>
public enum PayloadError
{
    None = 0,
    /// <summary>The bytes end before the structure they announce.</summary>
    Truncated,
    /// <summary>More bytes than the structure announces, or a size above the limits.</summary>
    Oversized,
    /// <summary>Inconsistent or invalid structure (bad varint, wrong tag, unsorted indices, padding bits...).</summary>
    Malformed,
    /// <summary>A NaN or infinity among the values or scales.</summary>
    NonFinite,
    /// <summary>Codec id or spec not known to this build.</summary>
    UnknownCodec,
    /// <summary>The payload's dimension differs from the one expected by the caller.</summary>
    DimensionMismatch,
    /// <summary>Format version newer than this build understands.</summary>
    UnsupportedVersion,
    /// <summary>Stored checksum does not match the content.</summary>
    BadChecksum,
}

/// <summary>Outcome of validating or decoding untrusted bytes: never an exception, always a reason.</summary>
public readonly record struct PayloadCheck(PayloadError Error, string? Message)
{
    public bool IsValid => Error == PayloadError.None;

    public static PayloadCheck Valid => default;

    public static PayloadCheck Fail(PayloadError error, string message) => new(error, message);

    public override string ToString() => IsValid ? "valid" : $"{Error}: {Message}";
}
