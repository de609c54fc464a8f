using System.Diagnostics.CodeAnalysis;
using FedEdge.Cloud.Security;
using FedEdge.Protocol;

namespace FedEdge.Cloud.Ingestion;

/// <summary>
/// The public key of the registry record the bridge already read for this update, so that verifying costs no second
/// registry query. It answers only for that device, and not at all once it is revoked.
/// </summary>
internal sealed class DeviceRecordKey(DeviceRecord device) : IVerificationKeys
{
    public bool TryGet(string keyId, [NotNullWhen(true)] out VerificationKey? key)
    {
        key = keyId == device.DeviceId && !device.Revoked ? new VerificationKey(device.DeviceId, device.PublicKey) : null;
        return key is not null;
    }
}
