// A spinner on stderr for what waits (reserving, uploading, building, booting), only when
// stderr is a terminal: in a pipe or a log file it would be noise.
import yoctoSpinner from 'yocto-spinner';

export interface Progress {
  update(text: string): void;
  /** Ends the spinner, leaving a final line (or nothing). */
  done(text?: string): void;
}

const silent: Progress = { update() {}, done() {} };

export function startProgress(text: string): Progress {
  if (!process.stderr.isTTY) return silent;
  // berth handles Ctrl-C itself (exit code 130), after the spinner is cleared.
  const spinner = yoctoSpinner({ text, stream: process.stderr, handleSignals: false }).start();
  const clear = () => spinner.stop();
  process.once('exit', clear);
  return {
    update(next) {
      spinner.text = next;
    },
    done(final) {
      process.removeListener('exit', clear);
      if (final) spinner.success(final);
      else spinner.stop();
    },
  };
}
