// SOFARPC peers for the Bolt interop suite, on npm's sofa-rpc-node and sofa-bolt-node (installed by
// scripts/install-test-deps.sh into target/peers/sofa; NODE_PATH points there).
//
//   node sofa_peer.js server NAME [PORT]        a SOFARPC server (direct mode, no registry) with
//       com.nodejs.test.TestService and com.nodejs.test.OtherService: plus(a, b), echo(s) -> "NAME:s",
//       fail(msg) throws, slow(ms). Prints "PORT n" once listening (PORT 0: one from the OS).
//   node sofa_peer.js seq TARGET SERVICE N      N sequential plus calls, each checked. Prints "OK N".
//   node sofa_peer.js many TARGET SERVICE N     N echo calls at once on one connection, each answer
//       matched to its call. Prints "OK N".
//   node sofa_peer.js errors TARGET             a business exception and an unknown service; prints
//       one JSON line per case with what the client saw.
//   node sofa_peer.js load TARGET SERVICE MS    calls (8 in flight) for MS ms (or until SIGTERM); prints JSON
//       {ok, failed, timeouts, maxMs, okAfterFirstFailure, firstError} (timeout per call 1000 ms;
//       `timeouts` counts the failures that were the client's own timeout).
//   node sofa_peer.js content SERVICE ARG FILE  writes to FILE the hessian2 content (the SofaRequest
//       object, no Bolt header) of the call echo(ARG), as an HTTP client posts it to the transcoder.
//   node sofa_peer.js v2 TARGET SERVICE         one Bolt v2 request with CRC32 on a raw socket; prints
//       JSON {proto, ver1, crc, id, result} of the answer.
'use strict';
const net = require('net');
const { RpcServer } = require('sofa-rpc-node').server;
const { RpcClient } = require('sofa-rpc-node').client;
const protocol = require('sofa-bolt-node/lib/protocol');
const logger = { info() {}, warn() {}, error: process.env.SOFA_DEBUG ? console.error : () => {}, debug() {} };
const [mode, ...args] = process.argv.slice(2);
const fail = e => { console.error('FAIL', e && e.stack || e); process.exit(1); };
const sid = s => `com.nodejs.test.${s}`;

async function server(name, port) {
  const s = new RpcServer({ logger, port: Number(port || 0) });
  const impl = {
    async plus(a, b) { return a + b; },
    async echo(x) { return `${name}:${x}`; },
    async fail(msg) { throw new Error(msg); },
    async slow(ms) { await new Promise(r => setTimeout(r, ms)); return ms; },
  };
  s.addService({ interfaceName: sid('TestService') }, impl);
  s.addService({ interfaceName: sid('OtherService') }, impl);
  await s.start();
  console.log('PORT ' + s.publishPort);
}

async function consumer(target, service) {
  const client = new RpcClient({ logger });
  const c = client.createConsumer({ interfaceName: sid(service), serverHost: target });
  await c.ready();
  return { client, c };
}

async function seq(target, service, n) {
  const { client, c } = await consumer(target, service);
  for (let i = 0; i < n; i++) {
    const r = await c.invoke('plus', [i, 1000], { responseTimeout: 3000 });
    if (r !== i + 1000) throw new Error(`plus(${i}, 1000) = ${r}`);
  }
  console.log(`OK ${n} ` + await c.invoke('echo', ['last'], { responseTimeout: 3000 }));
  await client.close();
}

async function many(target, service, n) {
  const { client, c } = await consumer(target, service);
  const calls = [];
  for (let i = 0; i < n; i++) calls.push(c.invoke('echo', [`call-${i}`], { responseTimeout: 10000 }));
  const got = await Promise.all(calls);
  got.forEach((r, i) => { if (!r.endsWith(`:call-${i}`)) throw new Error(`call ${i} got ${r}`); });
  console.log(`OK ${n}`);
  await client.close();
}

async function errors(target) {
  const show = async (service, method, argv) => {
    const { client, c } = await consumer(target, service);
    try {
      const r = await c.invoke(method, argv, { responseTimeout: 3000 });
      console.log(JSON.stringify({ service, method, result: r }));
    } catch (e) {
      console.log(JSON.stringify({ service, method, error: e.name, message: String(e.message).split('\n')[0] }));
    }
    await client.close();
  };
  await show('TestService', 'fail', ['business exception']);
  await show('NoSuchService', 'echo', ['x']);
}

async function load(target, service, ms) {
  const { client, c } = await consumer(target, service);
  let until = Date.now() + ms;
  // SIGTERM ends the run early: calls in flight finish, then the totals are printed.
  process.on('SIGTERM', () => { until = 0; });
  let ok = 0, failed = 0, timeouts = 0, maxMs = 0, okAfterFirstFailure = 0, firstError = '';
  const worker = async () => {
    while (Date.now() < until) {
      const t0 = Date.now();
      try {
        await c.invoke('plus', [1, 2], { responseTimeout: 1000 });
        ok++; if (failed > 0) okAfterFirstFailure++;
      } catch (e) {
        failed++;
        if (/timeout/i.test(e.name + ' ' + e.message)) timeouts++;
        if (!firstError) firstError = `${e.name}: ${String(e.message).split('\n')[0]}`;
        await new Promise(r => setTimeout(r, 20));
      }
      maxMs = Math.max(maxMs, Date.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  console.log(JSON.stringify({ ok, failed, timeouts, maxMs, okAfterFirstFailure, firstError }));
  await client.close();
}

function content(service, arg, file) {
  const req = { serverSignature: `${sid(service)}:1.0`, methodName: 'echo', args: [arg],
    timeout: 3000, requestProps: {} };
  const frame = protocol.requestEncode(1, req, { protocolType: 'bolt', codecType: 'hessian2' });
  // v1 request header: 22 bytes, classLen at 14, headerLen at 16.
  const at = 22 + frame.readUInt16BE(14) + frame.readUInt16BE(16);
  require('fs').writeFileSync(file, frame.slice(at));
}

function v2(target, service) {
  const [host, port] = target.split(':');
  const req = { serverSignature: `${sid(service)}:1.0`, methodName: 'echo', args: ['over-v2'],
    timeout: 3000, requestProps: {} };
  const frame = protocol.requestEncode(9, req,
    { protocolType: 'bolt2', boltVersion: 2, crcEnable: true, codecType: 'hessian2' });
  const sock = net.connect(Number(port), host, () => sock.write(frame));
  let buf = Buffer.alloc(0);
  const timer = setTimeout(() => fail('no answer in 5 s'), 5000);
  sock.on('data', d => {
    buf = Buffer.concat([buf, d]);
    // v2 response: 22-byte header (proto, ver1, type, cmd, ver2, id, codec, switch, status,
    // classLen, headerLen, contentLen), then the body and a CRC32 when switch bit 0 is set.
    if (buf.length < 22) return;
    const total = 22 + buf.readUInt16BE(14) + buf.readUInt16BE(16) + buf.readUInt32BE(18) + (buf[11] & 1 ? 4 : 0);
    if (buf.length < total) return;
    clearTimeout(timer);
    const ret = protocol.decode(buf.slice(0, total), {});
    console.log(JSON.stringify({ proto: buf[0], ver1: buf[1], crc: (buf[11] & 1) === 1,
      id: buf.readUInt32BE(6), result: ret.data && ret.data.appResponse }));
    sock.destroy();
  });
  sock.on('error', fail);
}

(async () => {
  switch (mode) {
    case 'server': return server(args[0], args[1]);
    case 'seq': await seq(args[0], args[1], Number(args[2])); break;
    case 'many': await many(args[0], args[1], Number(args[2])); break;
    case 'errors': await errors(args[0]); break;
    case 'load': await load(args[0], args[1], Number(args[2])); break;
    case 'v2': return v2(args[0], args[1]);
    case 'content': content(args[0], args[1], args[2]); break;
    default: fail(`unknown mode ${mode}`);
  }
  process.exit(0);
})().catch(fail);
