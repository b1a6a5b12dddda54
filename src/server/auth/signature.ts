/**
 * Step 5 of the agent pipeline: the request's HMAC signature (version 2, or version 1 when
 * accepted).
 *
 * @module
 */
import { constantTimeEqual, HEADER, shortForm, signV2Hashed } from "../../protocol/mod.ts";
import type { CommandStore } from "../../store/mod.ts";
import { HttpError } from "../http_error.ts";
import { AGENT_CREDENTIALS_WRONG } from "./bearer.ts";
import { type AgentCall, agentOf, type Dismissals, rawBodyOf } from "./call.ts";
import { refuseBodyFromHead } from "./json_body.ts";
import { refuse } from "./refuse.ts";

/**
 * The path and query of a request as a WHATWG URL parser leaves its target (signature version 2
 * covers it, docs/protocol.md §1). The adapter passes a plain target through unparsed, so a `'` of
 * its query sent raw would be signed raw by this side while a client that follows the doc signs
 * `%27`: the URL is parsed here, which leaves an already parsed one as it is.
 */
export function pathAndQueryOf(request: { readonly url: string }): string {
  let url = request.url;
  try {
    url = new URL(url).href;
  } catch {
    // not a URL: the target as it arrived
  }
  return targetOf(url);
}

/** The path and query of a URL or a request target, without a fragment. */
function targetOf(url: string): string {
  const schemeEnd = url.indexOf("//");
  const pathStart = url.indexOf("/", schemeEnd < 0 ? 0 : schemeEnd + 2);
  if (pathStart < 0) return "/";
  const hash = url.indexOf("#", pathStart);
  return hash < 0 ? url.slice(pathStart) : url.slice(pathStart, hash);
}

/** What every signature looks like: 32 bytes of HMAC-SHA256 in standard padded base64. */
const SIGNATURE_FORM = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/**
 * The body the signature covers, read (and hashed) only when its head does not refuse it: a
 * `Content-Length` beyond the route's limit or a `Content-Encoding` is answered (`413`, `415`) as
 * step 8 would, without a byte of it read; a body that grows beyond the limit as it arrives
 * (chunked) is answered `413` as soon as it does, read and hashed no further.
 */
function signedBodyOf(call: AgentCall, options: SignatureOptions, hmacKey?: string) {
  if (call.method !== "GET" && call.method !== "HEAD") {
    refuseBodyFromHead(call, options.maxBodyBytes);
  }
  return rawBodyOf(call, { maxBodyBytes: options.maxBodyBytes, stopAtLimit: true }, hmacKey);
}

/** Options of step 5. */
export interface SignatureOptions {
  /** Whether body-only version 1 signatures are accepted. */
  acceptV1: boolean;
  /** Largest accepted body, in bytes: the route's limit (step 8's). */
  maxBodyBytes: number;
  /**
   * Where the agent is read again once a body has arrived, when it may have been dismissed (its
   * token rotated, or the agent removed) meanwhile; none: not read again.
   */
  agents?: Pick<CommandStore, "getAgent">;
  /** Which agents were dismissed since a call's steps began; none: every agent may have been. */
  dismissals?: Dismissals;
}

/**
 * Step 5: `X-Agent-Signature` is the HMAC of the request with the agent's token: version 2 (the
 * canonical string), or version 1 (the body alone) when `acceptV1` is set.
 *
 * @param options Whether version 1 is accepted, and the body limit.
 * @param call The request, after step 1.
 * @throws {HttpError} `401`.
 */
export async function checkSignature(options: SignatureOptions, call: AgentCall): Promise<void> {
  if (call.unsigned) return;
  const agent = agentOf(call);
  const headers = call.headers;
  const token = agent.token ?? "";
  const signature = headers.get(HEADER.signature);
  if (!signature) {
    throw refuse(call, 401, "X-Agent-Signature header is missing", "authentication failed");
  }
  const version = headers.get(HEADER.signatureVersion)?.trim();
  let expected: string;
  if (version === "2") {
    const body = await signedBodyOf(call, options);
    const signed = (pathAndQuery: string) =>
      signV2Hashed(token, {
        method: call.method,
        pathAndQuery,
        timestamp: headers.get(HEADER.timestamp) ?? "",
        requestId: headers.get(HEADER.requestId) ?? "",
        bodySha256Hex: body.sha256Hex,
      });
    // The direct path's URL is parsed already (`http_app.ts`), with the raw target beside it.
    const parsed = call.target !== undefined ? targetOf(call.url) : pathAndQueryOf(call);
    expected = signed(parsed);
    // The target may also be signed exactly as sent (a raw `'` in a query, as the first
    // specification put it), where the request still has it: both forms name the same request.
    const raw = call.target ?? targetOf(call.url);
    if (raw !== parsed && !constantTimeEqual(signature.trim(), expected)) expected = signed(raw);
  } else if (version === undefined || version === "" || version === "1") {
    if (!options.acceptV1) {
      throw refuse(
        call,
        401,
        "signature version 1 is not accepted by this dashboard; send X-Signature-Version: 2 " +
          "(or start the dashboard with --accept-v1-signatures)",
        "authentication failed",
      );
    }
    const existing = call.rawBody;
    const body = existing?.hmacBase64 !== undefined
      ? existing
      : await signedBodyOf(call, options, token);
    if (body.hmacBase64 === undefined) {
      throw new HttpError(500, "the body was read before its version 1 signature");
    }
    expected = body.hmacBase64;
  } else {
    throw refuse(
      call,
      401,
      `X-Signature-Version "${shortForm(version)}" is not supported; send 2`,
      "authentication failed",
    );
  }
  const given = signature.trim();
  if (!SIGNATURE_FORM.test(given)) {
    // Not a signature of any key: a client's encoding mistake, told apart from a wrong key.
    throw refuse(
      call,
      401,
      `X-Agent-Signature must be an HMAC-SHA256 in standard padded base64 (44 characters of ` +
        `A-Z a-z 0-9 + /, ending in =); ` +
        // Given twice, the values come joined with ", ", which base64 never holds.
        (given.includes(", ")
          ? "it was given more than once"
          : `this one is ${given.length} characters` +
            (/^[0-9a-f]{64}$/i.test(given) ? " of hex" : "")),
      "authentication failed",
    );
  }
  if (!constantTimeEqual(given, expected)) {
    throw refuse(call, 401, "signature is wrong", "authentication failed");
  }
  if (options.agents && call.method !== "GET" && call.method !== "HEAD") {
    const mark = call.mark;
    const dismissed = options.dismissals === undefined || mark === undefined ||
      options.dismissals.dismissedSince(agent.id, mark);
    if (dismissed) await checkTokenStillValid(options.agents, call, agent.token);
  }
}

/**
 * The agent as it is once the body has arrived, which may be up to the body timeout after step 1
 * read it, when it was dismissed meanwhile: a token rotated, or the agent removed, refuses the
 * request as step 2 refuses a wrong token, so that nothing is taken with the old token from then
 * on. (Read only then: a read waits for the commit under way, and on PostgreSQL is one more query.)
 */
async function checkTokenStillValid(
  agents: Pick<CommandStore, "getAgent">,
  call: AgentCall,
  token: string | null,
): Promise<void> {
  const id = agentOf(call).id;
  const now = await agents.getAgent(id);
  if (now !== null && now.token === token) return;
  throw refuse(call, 401, AGENT_CREDENTIALS_WRONG, "authentication failed", {
    logged: now === null
      ? `agent ${id} was removed while the request's body arrived`
      : `agent ${id}'s token was rotated while the request's body arrived; bearer token is wrong`,
    reason: now === null ? "unknown_agent" : "wrong_token",
  });
}
