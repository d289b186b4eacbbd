package com.acme.billing;

/**
 * A JVM whose render threads busy-loop: a CPU fault named by its main class, with java as its
 * executable. Usage: java -cp DIR com.acme.billing.InvoiceRenderer THREADS SECONDS.
 * Prints "ready pid=PID" once every thread spins; exits by itself at the deadline.
 */
public final class InvoiceRenderer {
    private InvoiceRenderer() {}

    public static void main(String[] args) throws InterruptedException {
        int threads = Integer.parseInt(args[0]);
        long deadline = System.currentTimeMillis() + Long.parseLong(args[1]) * 1000L;
        java.util.concurrent.CountDownLatch started = new java.util.concurrent.CountDownLatch(threads);
        for (int i = 0; i < threads; i++) {
            Thread t = new Thread(() -> {
                started.countDown();
                long x = 0;
                while (System.currentTimeMillis() < deadline) {
                    for (int j = 0; j < 1_000_000; j++) {
                        x = x * 6364136223846793005L + 1442695040888963407L;
                    }
                }
                if (x == 42) {
                    System.out.print("");
                }
            }, "render-" + i);
            t.setDaemon(true);
            t.start();
        }
        started.await();
        System.out.println("ready pid=" + ProcessHandle.current().pid());
        System.out.flush();
        Thread.sleep(Math.max(0, deadline - System.currentTimeMillis()));
        System.exit(0);
    }
}
