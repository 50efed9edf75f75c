// Where berth keeps its files, per the XDG Base Directory specification: settings in the
// config directory, the session (a refresh token) in the state directory.
import os from 'node:os';
import path from 'node:path';

function xdg(variable: string, fallback: string[]): string {
  const value = process.env[variable];
  // The specification: a relative path in these variables is invalid and must be ignored.
  if (value && path.isAbsolute(value)) return path.join(value, 'berth');
  return path.join(os.homedir(), ...fallback, 'berth');
}

const configDir = () => xdg('XDG_CONFIG_HOME', ['.config']);
const stateDir = () => xdg('XDG_STATE_HOME', ['.local', 'state']);
export const configFile = () => path.join(configDir(), 'config.json');
export const sessionsFile = () => path.join(stateDir(), 'sessions.json');
