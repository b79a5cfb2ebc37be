// The short containers flow with the official `openai` npm package, unmodified.
// Reads OPENAI_BASE_URL and OPENAI_API_KEY like any app would; prints one JSON line per step and
// `{"ok": true, ...}` at the end; exits non-zero on the first failure.
import { randomBytes } from 'node:crypto';
import OpenAI, { toFile } from 'openai';
import { check, done, expectError, sha256, step } from './lib.mjs';

const client = new OpenAI(); // OPENAI_BASE_URL / OPENAI_API_KEY from the environment

const name = `node-${randomBytes(4).toString('hex')}`;
const container = await client.containers.create({
  name,
  expires_after: { anchor: 'last_active_at', minutes: 20 },
  memory_limit: '1g',
});
check(/^cntr_[0-9a-f]{48}$/.test(container.id), `container id ${container.id}`);
check(container.object === 'container' && container.name === name, 'container object and name');
step('create', { id: container.id, status: container.status });

const retrieved = await client.containers.retrieve(container.id);
check(retrieved.id === container.id && retrieved.name === name, 'retrieve returns the container');
step('retrieve', retrieved.status);

const listedIds = [];
for await (const item of client.containers.list({ limit: 2, order: 'desc' })) {
  listedIds.push(item.id);
}
check(listedIds.includes(container.id), 'auto-pagination lists the new container');
step('list', listedIds.length);

const data = randomBytes(3 * 1024 * 1024 + 17); // multi-MB binary, odd size
const uploaded = await client.containers.files.create(container.id, {
  file: await toFile(data, 'data.bin'),
});
check(/^cfile_[0-9a-f]{32}$/.test(uploaded.id), `file id ${uploaded.id}`);
check(uploaded.object === 'container.file' && uploaded.container_id === container.id, 'file object');
check(uploaded.path === '/mnt/data/data.bin' && uploaded.bytes === data.length, 'file path and size');
check(uploaded.source === 'user', 'uploads are user files');
step('upload', { id: uploaded.id, bytes: uploaded.bytes });

const files = [];
for await (const file of client.containers.files.list(container.id)) files.push(file.id);
check(files.includes(uploaded.id), 'the upload is listed');
step('list_files', files.length);

const fileAgain = await client.containers.files.retrieve(uploaded.id, { container_id: container.id });
check(fileAgain.id === uploaded.id && fileAgain.bytes === data.length, 'retrieve the file');

const response = await client.containers.files.content.retrieve(uploaded.id, { container_id: container.id });
const downloaded = Buffer.from(await response.arrayBuffer());
check(downloaded.length === data.length && sha256(downloaded) === sha256(data), 'download is byte-identical');
step('download', { bytes: downloaded.length, sha256: sha256(downloaded) });

await client.containers.files.delete(uploaded.id, { container_id: container.id });
await expectError(
  client.containers.files.retrieve(uploaded.id, { container_id: container.id }), OpenAI.NotFoundError, 404);
step('delete_file', true);

await expectError(client.containers.retrieve('cntr_' + '0'.repeat(48)), OpenAI.NotFoundError, 404);
await expectError(client.containers.create({ name, memory_limit: '3g' }), OpenAI.BadRequestError, 400);
const stranger = new OpenAI({ apiKey: 'sk-not-a-real-key', maxRetries: 0 });
await expectError(stranger.containers.list(), OpenAI.AuthenticationError, 401);
step('errors', ['NotFoundError', 'BadRequestError', 'AuthenticationError']);

await client.containers.delete(container.id);
// Deletion goes through the API server and the gateway's watch: allow it a moment to be seen.
for (let attempt = 0; ; attempt++) {
  try {
    await client.containers.retrieve(container.id);
  } catch (error) {
    check(error instanceof OpenAI.NotFoundError, `expected NotFoundError after delete, got ${error}`);
    break;
  }
  check(attempt < 50, 'the deleted container is still retrievable after 10 s');
  await new Promise((resolve) => setTimeout(resolve, 200));
}
step('delete', true);

done('openai-node');
