// Dubbo peers for the Dubbo registry interop suite, on npm's dubbo-remoting (the Dubbo protocol)
// plugged into sofa-rpc-node's server and client (installed by scripts/install-test-deps.sh into
// target/peers/dubbo; NODE_PATH points there). Direct mode: no registry of their own.
//
//   node dubbo_peer.js server NAME VERSION [PORT]   a Dubbo provider of
//       com.nodejs.test.TestService at VERSION: plus(a, b), echo(s) -> "NAME:s", who() -> NAME.
//       Prints "PORT n" once listening (PORT 0 or absent: one from the OS).
//   node dubbo_peer.js seq TARGET VERSION N        N sequential plus calls, each checked; prints
//       "OK N <echo answer>".
//   node dubbo_peer.js many TARGET VERSION N       N echo calls at once, each answer matched to
//       its call; prints "OK N".
//   node dubbo_peer.js call TARGET VERSION METHOD [ARG]   one call; prints its JSON result.
//   node dubbo_peer.js stream TARGET VERSION        echo calls, 4 in flight, until killed; one line
//       per answer: "<ms since start> ok <NAME>" or "<ms> fail <message>" (timeout 3000 ms).
'use strict';
const { RpcServer } = require('sofa-rpc-node').server;
const { RpcClient } = require('sofa-rpc-node').client;
const protocol = require('dubbo-remoting');
const logger = { info() {}, warn() {}, error: process.env.DUBBO_DEBUG ? console.error : () => {}, debug() {} };
const [mode, ...args] = process.argv.slice(2);
const fail = e => { console.error('FAIL', e && e.stack || e); process.exit(1); };
const SERVICE = 'com.nodejs.test.TestService';

async function server(name, version, port) {
  const s = new RpcServer({ logger, port: Number(port || 0), protocol });
  s.addService({ interfaceName: SERVICE, version }, {
    async plus(a, b) { return a + b; },
    async echo(x) { return `${name}:${x}`; },
    async who() { return name; },
  });
  await s.start();
  console.log('PORT ' + s.publishPort);
}

async function consumer(target, version) {
  const client = new RpcClient({ logger, protocol });
  const c = client.createConsumer({ interfaceName: SERVICE, version, serverHost: target });
  await c.ready();
  return { client, c };
}

async function seq(target, version, n) {
  const { client, c } = await consumer(target, version);
  for (let i = 0; i < n; i++) {
    const r = await c.invoke('plus', [i, 1000], { responseTimeout: 3000 });
    if (r !== i + 1000) throw new Error(`plus(${i}, 1000) = ${r}`);
  }
  console.log(`OK ${n} ` + await c.invoke('echo', ['last'], { responseTimeout: 3000 }));
  await client.close();
}

async function many(target, version, n) {
  const { client, c } = await consumer(target, version);
  const calls = [];
  for (let i = 0; i < n; i++) calls.push(c.invoke('echo', [`call-${i}`], { responseTimeout: 10000 }));
  const got = await Promise.all(calls);
  got.forEach((r, i) => { if (!r.endsWith(`:call-${i}`)) throw new Error(`call ${i} got ${r}`); });
  console.log(`OK ${n}`);
  await client.close();
}

async function call(target, version, method, arg) {
  const { client, c } = await consumer(target, version);
  const argv = method === 'who' ? [] : [arg || 'x'];
  try {
    console.log(JSON.stringify({ result: await c.invoke(method, argv, { responseTimeout: 3000 }) }));
  } catch (e) {
    console.log(JSON.stringify({ error: e.name, message: String(e.message).split('\n')[0] }));
  }
  await client.close();
}

async function stream(target, version) {
  const { c } = await consumer(target, version);
  const t0 = Date.now();
  const one = async () => {
    for (;;) {
      try {
        const r = await c.invoke('echo', ['s'], { responseTimeout: 3000 });
        process.stdout.write(`${Date.now() - t0} ok ${r.split(':')[0]}\n`);
      } catch (e) {
        process.stdout.write(`${Date.now() - t0} fail ${String(e.message).split('\n')[0]}\n`);
        await new Promise(r => setTimeout(r, 20));
      }
    }
  };
  await Promise.all([one(), one(), one(), one()]);
}

const modes = {
  server: () => server(args[0], args[1], args[2]),
  seq: () => seq(args[0], args[1], Number(args[2])),
  many: () => many(args[0], args[1], Number(args[2])),
  call: () => call(args[0], args[1], args[2], args[3]),
  stream: () => stream(args[0], args[1]),
};
if (!modes[mode]) fail(`unknown mode ${mode}`);
// Client modes exit when done: the client's timers would keep Node running for 30 s.
modes[mode]().then(() => { if (mode !== 'server') process.exit(0); }).catch(fail);
