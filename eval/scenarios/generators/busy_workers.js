// A node service whose worker_threads busy-loop: a CPU fault under the name of the script it is
// copied to, with node as its executable.
//   node busy_workers.js THREADS SECONDS
// Prints `ready pid=<pid>` once every worker spins; exits by itself at the deadline.
'use strict';
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');
if (isMainThread) {
  const [threads, seconds] = process.argv.slice(2).map(Number);
  const deadline = Date.now() + seconds * 1000;
  let started = 0;
  for (let i = 0; i < threads; i++) {
    const w = new Worker(__filename, { workerData: { deadline } });
    w.on('message', () => { if (++started === threads) console.log(`ready pid=${process.pid}`); });
  }
  setTimeout(() => process.exit(0), seconds * 1000 + 500);
} else {
  parentPort.postMessage('spinning');
  let x = 0;
  while (Date.now() < workerData.deadline) {
    for (let i = 0; i < 1e6; i++) x = (x * 1103515245 + 12345) >>> 0;
  }
}
