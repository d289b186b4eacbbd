package com.acme.catalog;

/**
 * A JVM that started with a big, pre-touched heap (run it with -Xms/-Xmx and
 * -XX:+AlwaysPreTouch) and then idles: a large, stable footprint and no work.
 * Usage: java -Xms2g -Xmx2g -XX:+AlwaysPreTouch -cp DIR com.acme.catalog.CatalogServer SECONDS.
 * Prints "ready pid=PID" after startup; exits by itself at the deadline.
 */
public final class CatalogServer {
    private CatalogServer() {}

    public static void main(String[] args) throws InterruptedException {
        long deadline = System.currentTimeMillis() + Long.parseLong(args[0]) * 1000L;
        byte[][] index = new byte[64][];
        for (int i = 0; i < index.length; i++) {
            index[i] = new byte[4 * 1024 * 1024];
            java.util.Arrays.fill(index[i], (byte) i);
        }
        System.out.println("ready pid=" + ProcessHandle.current().pid() + " index=" + index.length);
        System.out.flush();
        Thread.sleep(Math.max(0, deadline - System.currentTimeMillis()));
        System.exit(0);
    }
}
