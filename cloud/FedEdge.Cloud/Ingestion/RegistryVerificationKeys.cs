using System.Diagnostics.CodeAnalysis;
using FedEdge.Cloud.Security;
using FedEdge.Protocol;

namespace FedEdge.Cloud.Ingestion;

/// <summary>Device public keys for the protocol's verifier, straight from the registry (revoked devices have none).</summary>
internal sealed class RegistryVerificationKeys(DeviceRegistry registry) : IVerificationKeys
{
    public bool TryGet(string keyId, [NotNullWhen(true)] out VerificationKey? key)
    {
        key = null;
        if (!Abstractions.Identifiers.IsValid(keyId) || registry.Find(keyId) is not { Revoked: false } device) return false;
        key = new VerificationKey(device.DeviceId, device.PublicKey);
        return true;
    }
}
