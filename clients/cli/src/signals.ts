// Ctrl-C ends berth with exit code 130, unless a command has handed the terminal to a
// child process (ssh): then the interrupt is the child's, and berth waits for it.
import { EXIT } from './errors.js';

let childOwnsInterrupts = false;

export function handInterruptsToChild(): void {
  childOwnsInterrupts = true;
}

export function exitOnInterrupt(): void {
  process.on('SIGINT', () => {
    if (childOwnsInterrupts) return;
    process.stderr.write('\n');
    process.exit(EXIT.interrupted); // 'exit' listeners clear a spinner first
  });
}
