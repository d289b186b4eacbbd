// Grows its resident memory steadily with Buffers kept in an array (outside the V8 heap, every
// byte written), the way a cache that is never evicted leaks.
//   node leak.js RATE_MIB_PER_S MAX_MIB SECONDS
// Prints `ready pid=<pid>` after the first chunk; stops growing at MAX_MIB; exits at the deadline.
'use strict';
const [rate, max, seconds] = process.argv.slice(2).map(Number);
const MIB = 1024 * 1024;
const deadline = Date.now() + seconds * 1000;
const perStep = Math.max(1, Math.round(rate / 10));
const kept = [];
let total = 0;
const tick = () => {
  if (Date.now() >= deadline) process.exit(0);
  if (total + perStep <= max) {
    kept.push(Buffer.allocUnsafe(perStep * MIB).fill(kept.length & 0xff));
    total += perStep;
    if (kept.length === 1) console.log(`ready pid=${process.pid}`);
  }
};
tick();
setInterval(tick, 100);
setTimeout(() => process.exit(0), seconds * 1000);
