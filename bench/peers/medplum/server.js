// Benchmark peer: @medplum/hl7's Hl7Server. Parses every message (Hl7Message.parse, done by
// Hl7Connection on each frame) and answers with the message's own buildAck(): the library's
// regular path, nothing stored. Started by `python -m bench` as `node server.js PORT`; prints
// "ready" once it listens, stops on SIGTERM.
'use strict';

const { Hl7Server } = require('@medplum/hl7');

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node server.js PORT');
  process.exit(2);
}

let errors = 0;
const server = new Hl7Server((connection) => {
  connection.addEventListener('message', ({ message }) => {
    connection.send(message.buildAck({ ackCode: 'AA' }));
  });
  connection.addEventListener('error', (event) => {
    errors += 1;
    if (errors <= 5) console.error(`hl7 connection error: ${event.error?.message ?? event.error}`);
  });
});

// Hl7Server.start(port) hands its argument to net.Server.listen, which also takes
// {port, host}: this keeps the peer on the loopback interface like the other servers.
server.start({ port, host: '127.0.0.1' });
server.server.once('listening', () => console.log(`ready medplum 127.0.0.1:${port}`));

process.on('SIGTERM', () => {
  server.stop({ forceDrainTimeoutMs: 0 }).finally(() => process.exit(0));
});
