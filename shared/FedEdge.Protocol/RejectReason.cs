using System.Diagnostics.CodeAnalysis;
using FedEdge.Compression;

namespace FedEdge.Protocol;

/// <summary>Why a received message was refused. Decoders return one of these; they never throw on input.</summary>
public enum RejectReason
{
    None = 0,
    /// <summary>Not a valid protobuf message / payload structure, or a required field is missing or invalid.</summary>
    Malformed,
    /// <summary>Larger than the configured limit, or trailing bytes after a payload.</summary>
    Oversized,
    /// <summary>Ends before the structure it announces.</summary>
    Truncated,
    /// <summary>Signature missing, of the wrong length, or not valid for the signed bytes and key.</summary>
    BadSignature,
    /// <summary>No public key is registered for the signer (device id or cloud key id).</summary>
    UnknownKey,
    /// <summary>Codec spec not known to this build, or payload tag of another codec.</summary>
    UnknownCodec,
    /// <summary>NaN or infinity in the payload or the metrics.</summary>
    NonFinite,
    /// <summary>Message for another federation than the receiver's.</summary>
    WrongFederation,
    /// <summary>Device id in the message differs from the device the transport authenticated.</summary>
    WrongDevice,
    /// <summary>Reassembled bytes do not match the announced SHA-256.</summary>
    HashMismatch,
    /// <summary>Payload dimension differs from the announced or expected one.</summary>
    DimensionMismatch,
    /// <summary>A chunk disagrees with earlier chunks or the announcement (count, size, hash, version).</summary>
    Inconsistent,
    /// <summary>Reassembly did not complete within the timeout.</summary>
    Expired,
    /// <summary>Memory budget for pending reassemblies exhausted.</summary>
    Busy,
    /// <summary>A format version newer than this build understands.</summary>
    UnsupportedVersion,
}

/// <summary>Either a verified value or a rejection with its reason and a message naming what was wrong.</summary>
public readonly struct Decoded<T>
    where T : class
{
    private Decoded(T? value, RejectReason reason, string? message)
    {
        Value = value;
        Reason = reason;
        Message = message;
    }

    public T? Value { get; }

    public RejectReason Reason { get; }

    public string? Message { get; }

    [MemberNotNullWhen(true, nameof(Value))]
    public bool IsAccepted => Reason == RejectReason.None && Value is not null;

    public static Decoded<T> Accept(T value) => new(value, RejectReason.None, null);

    public static Decoded<T> Reject(RejectReason reason, string message) => new(null, reason, message);

    /// <summary>The value, or an <see cref="InvalidDataException"/> carrying the reason (for trusted callers).</summary>
    public T GetValueOrThrow() => IsAccepted ? Value : throw new InvalidDataException($"{Reason}: {Message}");

    public override string ToString() => IsAccepted ? $"accepted {Value}" : $"rejected {Reason}: {Message}";
}

internal static class RejectReasons
{
    public static RejectReason From(PayloadError error) => error switch
    {
        PayloadError.None => RejectReason.None,
        PayloadError.Truncated => RejectReason.Truncated,
        PayloadError.Oversized => RejectReason.Oversized,
        PayloadError.NonFinite => RejectReason.NonFinite,
        PayloadError.UnknownCodec => RejectReason.UnknownCodec,
        PayloadError.DimensionMismatch => RejectReason.DimensionMismatch,
        PayloadError.UnsupportedVersion => RejectReason.UnsupportedVersion,
        _ => RejectReason.Malformed,
    };
}
