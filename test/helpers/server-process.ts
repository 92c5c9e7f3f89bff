// A test server as a child process that can be stopped and started again
// on the same port (redis-server, s3rver): start() waits until the port
// accepts connections and reports the server's output if it never does;
// every child is killed when the test process exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { waitForPort } from './ports.js';

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

export interface ServerProcess {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Sends a signal to the running server (SIGSTOP freezes it: it keeps its port but never answers). */
  signal(sig: NodeJS.Signals): void;
}

export function serverProcess(name: string, cmd: string, args: string[], port: number, startTimeoutMs: number): ServerProcess {
  let proc: ChildProcess | undefined;
  let output = '';
  return {
    async start() {
      if (proc) return;
      const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      proc = p;
      running.add(p);
      p.stdout!.on('data', (d) => (output += d));
      p.stderr!.on('data', (d) => (output += d));
      let exited = false;
      p.once('exit', () => {
        exited = true;
        running.delete(p);
      });
      try {
        await waitForPort(port, startTimeoutMs, () => !exited);
      } catch (e) {
        throw new Error(`${name} did not start: ${(e as Error).message}\n${output}`);
      }
    },
    async stop() {
      const p = proc;
      proc = undefined;
      if (!p || p.exitCode !== null) return;
      await new Promise<void>((resolve) => {
        p.once('exit', () => resolve());
        p.kill('SIGCONT'); // a frozen server would keep SIGTERM pending
        p.kill('SIGTERM');
      });
    },
    signal(sig) {
      proc?.kill(sig);
    },
  };
}
