// The Dockerfile check of POST /v1/images (src/modules/images/dockerfile-policy.ts): what
// would make the engine reach the network is refused in every spelling the engine reads.
import { describe, expect, it } from 'vitest';
import { checkDockerfile } from '../../src/modules/images/dockerfile-policy.js';
import { AppError } from '../../src/errors/app-error.js';

const FROM = 'FROM berth/debian-sshd:bookworm\n';

function refusal(dockerfile: string): string | null {
  try {
    checkDockerfile(dockerfile);
    return null;
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    expect(err.code).toBe('dockerfile_not_allowed');
    return err.detail;
  }
}

describe('checkDockerfile', () => {
  it('accepts what builds offline: local ADD and COPY, RUN, ONBUILD of those, comments, continuations', () => {
    const ok = [
      `${FROM}RUN apt-get install -y git || true\n`,
      `${FROM}ADD rootfs.tar /\nADD --chown=1:1 a.txt b.txt /opt/\nCOPY . /src\n`,
      `${FROM}ADD ["files/a b.tar", "/x/"]\n`,
      `${FROM}RUN echo http://example.com \\\n  && echo add\n`,
      `${FROM}# ADD http://example.com/x /x\nLABEL url=https://example.com\nENV SITE=https://example.com\n`,
      `${FROM}ONBUILD ADD local.tar /\nONBUILD RUN true\n`,
      `${FROM}COPY --from=builder /out /out\nEXPOSE 22\nUSER root\nWORKDIR /\nCMD ["/usr/sbin/sshd", "-D"]\n`,
    ];
    for (const dockerfile of ok) expect(refusal(dockerfile), dockerfile).toBeNull();
  });

  it('refuses ADD from the network in every form: URL, git, --checksum, JSON, any case, continued lines, ONBUILD', () => {
    const remote = [
      `${FROM}ADD http://127.0.0.1:8080/openapi.json /x\n`,
      `${FROM}ADD https://example.com/a.tar.gz /x\n`,
      `${FROM}add http://example.com/a /x\n`,
      `${FROM}Add HTTP://example.com/a /x\n`,
      `${FROM}ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/a /x\n`,
      `${FROM}ADD --chown=1:1 local.txt http://example.com/a /x/\n`,
      `${FROM}ADD ["https://example.com/a", "/x"]\n`,
      `${FROM}ADD [ "local.txt",\\\n "http://example.com/a", "/x/" ]\n`,
      `${FROM}ADD git@github.com:moby/moby.git /src\n`,
      `${FROM}ADD github.com/moby/moby /src\n`,
      `${FROM}ADD git://example.com/repo.git /src\n`,
      `${FROM}ADD --keep-git-dir=true https://github.com/moby/buildkit.git#v0.10.1 /buildkit\n`,
      `${FROM}A\\\nDD http://example.com/a /x\n`,
      `${FROM}ADD \\\n  http://example.com/a \\\n  /x\n`,
      `${FROM}ADD \\\n# a comment inside the instruction\n  http://example.com/a /x\n`,
      `${FROM}ADD ht\\\ntp://example.com/a /x\n`,
      `# escape=\`\n${FROM}ADD \`\n  http://example.com/a /x\n`,
      `${FROM}   ADD\thttp://example.com/a /x\n`,
      `${FROM}ONBUILD ADD http://example.com/a /x\n`,
      `${FROM}onbuild add https://example.com/a /x\n`,
      `${FROM}ADD s3://bucket/a /x\n`,
    ];
    for (const dockerfile of remote) expect(refusal(dockerfile), dockerfile).toMatch(/^Dockerfile line \d+: ADD from the network/);
  });

  it('refuses variables in ADD (they may lead to a URL), --network on any instruction, here-documents and unknown instructions', () => {
    const cases: [string, RegExp][] = [
      [`${FROM}ARG U=http://127.0.0.1/x\nADD $U /x\n`, /ADD with a variable/],
      [`${FROM}ADD \${U} /x\n`, /ADD with a variable/],
      [`${FROM}ADD ["$U", "/x"]\n`, /ADD with a variable/],
      [`${FROM}RUN --network=host curl http://example.com\n`, /RUN --network is not allowed/],
      [`${FROM}run --network=none true\n`, /RUN --network is not allowed/],
      [`${FROM}RUN --mount=type=cache,target=/c \\\n  --network=default true\n`, /RUN --network is not allowed/],
      [`${FROM}ONBUILD RUN --network=host true\n`, /RUN --network is not allowed/],
      [`${FROM}COPY <<EOF /file\nADD http://example.com/a /x\nEOF\n`, /here-documents/],
      [`${FROM}RUN <<EOF\ntrue\nEOF\n`, /here-documents/],
      [`${FROM}FETCH http://example.com/a\n`, /unknown instruction FETCH/],
    ];
    for (const [dockerfile, why] of cases) expect(refusal(dockerfile), dockerfile).toMatch(why);
  });

  it('names the line', () => {
    expect(refusal(`${FROM}RUN true\n\nADD http://example.com/a /x\n`)).toMatch(/^Dockerfile line 4: /);
  });
});
