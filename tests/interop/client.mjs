// A second-language agentnet client, written from docs/signing.md and the protos alone:
// registers an agent, joins a group, sends a message signed in raw r||s (WebCrypto's form) whose
// payload has integers, floats, unicode and nested objects, and verifies every other message of
// the group (DER signatures, certificates fetched with GetDevice and checked against the CA).
//
//   node client.mjs CONFIG.json   -> prints one JSON line: {"sent": {...}, "verified": [...]}
//
// CONFIG: {server, device_dir, device_id, agent, group, protos: [include dirs], payload, content}
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import crypto from "node:crypto";

const require = createRequire(process.cwd() + "/");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const dir = cfg.device_dir;
const ca = readFileSync(`${dir}/ca.pem`);
const keyPem = readFileSync(`${dir}/key.pem`);
const certPem = readFileSync(`${dir}/cert.pem`);

const def = protoLoader.loadSync("agentnet/v1/service.proto", {
  includeDirs: cfg.protos,
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
});
const pkg = grpc.loadPackageDefinition(def);
const creds = grpc.credentials.createSsl(ca, keyPem, certPem);
const stub = new pkg.agentnet.v1.AgentNet(cfg.server, creds, {
  "grpc.ssl_target_name_override": "localhost",
});
const call = (method, req) =>
  new Promise((resolve, reject) =>
    stub[method](req, { deadline: Date.now() + 15000 }, (err, res) => (err ? reject(err) : resolve(res))),
  );

// -- docs/signing.md ----------------------------------------------------------------------------
function jcs(v) {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return "[" + v.map(jcs).join(",") + "]";
  return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + jcs(v[k])).join(",") + "}";
}
function field(s) {
  const b = Buffer.from(s, "utf8");
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}
function messageBytes(f) {
  const fields = [f.device, f.sender, f.target, f.client_msg_id, f.content, f.payload, String(f.sign_time_us)];
  if (f.reply_to || f.auto_hops) fields.push(String(f.reply_to || 0), String(f.auto_hops || 0));
  return Buffer.concat([Buffer.from("agentnet.v1.message", "ascii"), ...fields.map(field)]);
}

// -- google.protobuf.Struct <-> JSON ------------------------------------------------------------
// protobufjs ships google/protobuf/struct.proto itself, with camelCase field names.
function toValue(v) {
  if (v === null) return { nullValue: "NULL_VALUE" };
  if (typeof v === "number") return { numberValue: v };
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v) };
}
function toStruct(o) {
  const fields = {};
  for (const [k, v] of Object.entries(o)) fields[k] = toValue(v);
  return { fields };
}
function fromValue(v) {
  switch (v.kind) {
    case "nullValue": return null;
    case "numberValue": return v.numberValue;
    case "stringValue": return v.stringValue;
    case "boolValue": return v.boolValue;
    case "listValue": return (v.listValue.values || []).map(fromValue);
    case "structValue": return fromStruct(v.structValue);
  }
  throw new Error("unknown Value kind " + v.kind);
}
function fromStruct(s) {
  const out = {};
  for (const [k, v] of Object.entries(s.fields || {})) out[k] = fromValue(v);
  return out;
}
const micros = (ts) => BigInt(ts.seconds || "0") * 1000000n + BigInt(Math.floor((ts.nanos || 0) / 1000));

async function main() {
  await call("RegisterAgent", { agent: { id: cfg.agent, display_name: cfg.agent } });
  await call("JoinGroup", { group_id: cfg.group, agent_id: cfg.agent, create_if_missing: true });

  // Send: raw r||s signature (IEEE P1363), the payload as RFC 8785 text.
  const now = BigInt(Date.now()) * 1000n;
  const cmid = "node-" + crypto.randomUUID();
  const bytes = messageBytes({
    device: cfg.device_id, sender: cfg.agent, target: "group:" + cfg.group, client_msg_id: cmid,
    content: cfg.content, payload: jcs(cfg.payload), sign_time_us: now,
  });
  const signature = crypto.sign("sha256", bytes, { key: keyPem, dsaEncoding: "ieee-p1363" });
  const ack = await call("SendGroupMessage", {
    group_id: cfg.group, agent_id: cfg.agent, client_msg_id: cmid, content: cfg.content,
    payload: toStruct(cfg.payload), signature,
    sign_time: { seconds: String(now / 1000000n), nanos: Number(now % 1000000n) * 1000 },
  });

  // Verify everything else in the group, as a recipient must.
  const caCert = new crypto.X509Certificate(ca);
  const hist = await call("ListGroupMessages", { group_id: cfg.group, agent_id: cfg.agent, page_size: 100 });
  const verified = [];
  for (const m of hist.messages || []) {
    if (m.sender === cfg.agent) continue;
    const dev = await call("GetDevice", { device_id: m.sender_device, fingerprint: m.signer_fingerprint });
    const cert = new crypto.X509Certificate(dev.certificate_pem);
    const chains = cert.verify(caCert.publicKey) && cert.checkIssued(caCert);
    const cn = /CN=([^\n,]+)/.exec(cert.subject)?.[1];
    const fp = cert.fingerprint256.replace(/:/g, "").toLowerCase();
    const payloadJson = m.payload ? fromStruct(m.payload) : null;
    const data = messageBytes({
      device: m.sender_device, sender: m.sender,
      target: m.group_id ? "group:" + m.group_id : "agent:" + m.recipient,
      client_msg_id: m.client_msg_id, content: m.content,
      payload: payloadJson === null ? "" : jcs(payloadJson),
      sign_time_us: m.sign_time ? micros(m.sign_time) : 0n,
      reply_to: Number(m.reply_to || 0), auto_hops: Number(m.auto_hops || 0),
    });
    const ok = crypto.verify("sha256", data, cert.publicKey, Buffer.from(m.signature));
    verified.push({
      seq: Number(m.seq), sender: m.sender, content: m.content, payload: payloadJson,
      verified: ok && chains && cn === m.sender_device && fp === m.signer_fingerprint,
      tampered_rejected: !crypto.verify("sha256", Buffer.concat([data, Buffer.from("x")]), cert.publicKey, Buffer.from(m.signature)),
    });
  }
  console.log(JSON.stringify({ sent: { seq: Number(ack.message.seq), client_msg_id: cmid }, verified }));
  stub.close();
}

main().catch((e) => {
  console.error(String(e && e.stack ? e.stack : e));
  process.exit(1);
});
