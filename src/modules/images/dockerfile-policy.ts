// What a Dockerfile may ask of the engine. RUN has no network (the build runs with
// networking off), but the engine itself fetches `ADD <url>` (and git sources) on the
// host's network, loopback included, and `RUN --network=…` asks for a network: both are
// refused, before anything is built.
//
// The Dockerfile is read with dockerfile-ast (instructions, line continuations, the escape
// directive, JSON arguments, ONBUILD triggers). Where a reader could disagree with the
// engine, berth refuses rather than guesses: here-documents (the classic builder reads
// their lines as instructions, BuildKit as file content), instructions the engine does not
// know (one reader's continuation is the other's new line), and variables in ADD (where
// they lead depends on the base image's environment). Each physical line is also read on
// its own, as an engine that disagreed about continuations would.
import { DockerfileParser, type Instruction } from 'dockerfile-ast';
import { AppError } from '../../errors/app-error.js';

const INSTRUCTIONS = new Set([
  'ADD', 'ARG', 'CMD', 'COPY', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'FROM', 'HEALTHCHECK', 'LABEL',
  'MAINTAINER', 'ONBUILD', 'RUN', 'SHELL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR',
]);

/** A URL of any scheme, an scp-like git address, or the engine's `github.com/…` shorthand. */
const REMOTE_SOURCE = /:\/\/|^git@|^github\.com\//i;

const refuse = (line: number, why: string) => new AppError('dockerfile_not_allowed', `Dockerfile line ${line + 1}: ${why}`);

/** Why an ADD argument is refused, or null. */
function addArgumentProblem(value: string): string | null {
  if (REMOTE_SOURCE.test(value)) return `ADD from the network (${value.slice(0, 100)}) is not allowed: the engine would fetch it on this host's network; copy the file into the build context`;
  if (value.includes('$')) return 'ADD with a variable is not allowed (where it leads is not known before the build): write the path out';
  return null;
}

function checkInstruction(instruction: Instruction): void {
  const line = instruction.getRange().start.line;
  const keyword = instruction.getKeyword();
  if (!INSTRUCTIONS.has(keyword)) throw refuse(line, `unknown instruction ${instruction.getInstruction().slice(0, 40)}`);
  if (keyword === 'ONBUILD') {
    const trigger = (instruction as unknown as { getTriggerInstruction(): Instruction | null }).getTriggerInstruction();
    if (trigger) checkInstruction(trigger);
    return;
  }
  // Every instruction has the method; only RUN and COPY declare it public.
  const heredocs = (instruction as unknown as { getHeredocs(): unknown[] }).getHeredocs();
  if (heredocs.length) throw refuse(line, 'here-documents (<<) are not accepted: put the content in a file of the build context');
  const flags = (instruction as unknown as { getFlags?(): { getName(): string }[] }).getFlags?.() ?? [];
  if (flags.some((flag) => flag.getName().toLowerCase() === 'network')) {
    throw refuse(line, `${keyword} --network is not allowed: builds run without a network`);
  }
  if (keyword === 'ADD') {
    const json = (instruction as unknown as { getJSONStrings(): { getJSONValue(): string }[] }).getJSONStrings();
    const values = json.length ? json.map((s) => s.getJSONValue()) : instruction.getArguments().map((a) => a.getValue());
    for (const value of values) {
      const problem = addArgumentProblem(value);
      if (problem) throw refuse(line, problem);
    }
  }
}

/** A physical line that starts an ADD or RUN, read without any continuation. */
const STARTS_ADD = /^\s*(?:onbuild\s+)?add\s/i;
const STARTS_RUN = /^\s*(?:onbuild\s+)?run\s/i;

function checkPhysicalLines(dockerfile: string): void {
  dockerfile.split(/\r?\n|\r/).forEach((text, line) => {
    if (STARTS_ADD.test(text)) {
      for (const token of text.trim().split(/[\s,[\]"]+/).slice(1)) {
        const problem = token.startsWith('--') ? null : addArgumentProblem(token);
        if (problem) throw refuse(line, problem);
      }
    }
    if (STARTS_RUN.test(text) && /\s--network\b/i.test(text)) throw refuse(line, 'RUN --network is not allowed: builds run without a network');
  });
}

/** 400 dockerfile_not_allowed unless the Dockerfile keeps the build off the network. */
export function checkDockerfile(dockerfile: string): void {
  for (const instruction of DockerfileParser.parse(dockerfile).getInstructions()) checkInstruction(instruction);
  checkPhysicalLines(dockerfile);
}
