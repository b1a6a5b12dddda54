import assert from "node:assert/strict";
import { addressKey } from "../../src/server/address_key.ts";

Deno.test("addressKey counts an IPv6 client by its /64 and an IPv4 one by its address", async (t) => {
  const cases: Array<[string | undefined, string | undefined]> = [
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["2001:db8::ffff", "2001:db8:0:0::/64"],
    ["2001:0DB8:0000:0000:1234:5678:9abc:def0", "2001:db8:0:0::/64"],
    ["2001:db8:0:1::1", "2001:db8:0:1::/64"],
    ["[2001:db8:0:1::1]", "2001:db8:0:1::/64"],
    ["fe80::1%eth0", "fe80:0:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
    ["::ffff:192.0.2.7", "192.0.2.7"],
    ["::ffff:c000:207", "192.0.2.7"],
    ["64:ff9b::192.0.2.7", "64:ff9b:0:0::/64"],
    ["192.0.2.7", "192.0.2.7"],
    ["localhost", "localhost"],
    [undefined, undefined],
    ["1:2:3", "1:2:3"],
    ["1::2::3", "1::2::3"],
    ["1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8:9"],
    ["::ffff:300.0.2.7", "::ffff:300.0.2.7"],
    ["g::1", "g::1"],
  ];
  for (const [remote, key] of cases) {
    await t.step(`${remote} → ${key}`, () => assert.equal(addressKey(remote), key));
  }
});
