/**
 * The dashboard's TLS pair, checked once before listening.
 *
 * @module
 */
import { ConfigError } from "../errors.ts";

/**
 * Checks that a certificate and a private key are PEM and belong together, as the listener will
 * load them, without opening a socket: a bad pair would otherwise fail every HTTPS connection, one
 * by one, while the dashboard seemed to run.
 *
 * @param tls The PEM texts.
 * @param names How the certificate and the key are named in errors.
 * @throws {TypeError} When `tls` is not an object holding two strings.
 * @throws {ConfigError} Naming which of the two is wrong and how (an encrypted key too).
 */
export function checkTlsPair(
  tls: { cert: string; key: string },
  names: { cert: string; key: string } = { cert: "tls.cert", key: "tls.key" },
): void {
  const tlsObject = tls as { cert?: unknown; key?: unknown } | null;
  if (
    tlsObject === null || typeof tlsObject !== "object" || typeof tlsObject.cert !== "string" ||
    typeof tlsObject.key !== "string"
  ) {
    // Taken for a pair with no certificate: the dashboard started, and failed every handshake.
    // Only the types are quoted: a key's text is a secret.
    const given = tlsObject === null || typeof tlsObject !== "object"
      ? tlsObject === null ? "null" : typeof tlsObject
      : `{ cert: ${typeof tlsObject.cert}, key: ${typeof tlsObject.key} }`;
    throw new TypeError(
      `tls must be { cert, key }: the PEM certificate and private key (their contents, not ` +
        `paths), got ${given}`,
    );
  }
  // An encrypted key (PKCS #8 or a traditional one with a Proc-Type header) is read as no key, or
  // as one that cannot be decoded: say what it is, and how to give it as the listener needs it.
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|^Proc-Type:\s*4,\s*ENCRYPTED/m.test(tls.key)) {
    throw new ConfigError(
      `${names.key} is encrypted (it needs a passphrase, which the dashboard cannot give); give ` +
        "it unencrypted: openssl pkey -in <encrypted key> -out <new key> (readable only by the " +
        "dashboard's user)",
    );
  }
  try {
    Deno.createHttpClient({ cert: tls.cert, key: tls.key }).close();
  } catch (error) {
    const message = (error as Error).message;
    if (/no certificates found/i.test(message)) {
      throw new ConfigError(
        `${names.cert} holds no PEM certificate (a "-----BEGIN CERTIFICATE-----" block)`,
        { cause: error },
      );
    }
    if (/no keys found/i.test(message)) {
      throw new ConfigError(
        `${names.key} holds no PEM private key (a "-----BEGIN ... PRIVATE KEY-----" block)`,
        { cause: error },
      );
    }
    if (/KeyMismatch|not be consistent/i.test(message)) {
      throw new ConfigError(
        `${names.key} is not the private key of the certificate in ${names.cert}`,
        {
          cause: error,
        },
      );
    }
    throw new ConfigError(`${names.cert} and ${names.key} cannot be used for HTTPS: ${message}`, {
      cause: error,
    });
  }
}
