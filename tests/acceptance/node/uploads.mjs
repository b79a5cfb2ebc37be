// The Uploads API with the official `openai` npm package: a file sent in parts (out of order, in
// parallel), completed with an md5 into a File that a container gets as file_ids; cancel.
import { createHash, randomBytes } from 'node:crypto';
import OpenAI, { toFile } from 'openai';
import { check, done, expectError, sha256, step } from './lib.mjs';

const client = new OpenAI(); // OPENAI_BASE_URL / OPENAI_API_KEY from the environment
const MiB = 1024 * 1024;
const data = randomBytes(5 * MiB + 321); // three parts of 2 MiB, the last short
const chunks = [0, 1, 2].map((i) => data.subarray(i * 2 * MiB, (i + 1) * 2 * MiB));

const upload = await client.uploads.create({
  bytes: data.length, filename: 'node-parts.bin', mime_type: 'application/octet-stream', purpose: 'user_data',
});
check(/^upload_/.test(upload.id) && upload.status === 'pending' && upload.bytes === data.length, 'upload object');
step('create', upload.id);

// The last part first and all at once: the order of part_ids, not of arrival, makes the file.
const parts = await Promise.all([2, 0, 1].map(async (i) => [i, await client.uploads.parts.create(upload.id, {
  data: await toFile(chunks[i], `part${i}`),
})]));
const partIds = parts.sort(([a], [b]) => a - b).map(([, part]) => part.id);
check(parts.every(([, part]) => part.object === 'upload.part' && part.upload_id === upload.id), 'part objects');
step('parts', partIds.length);

await expectError(client.uploads.complete(upload.id, { part_ids: partIds, md5: '0'.repeat(32) }),
  OpenAI.BadRequestError, 400);
const completed = await client.uploads.complete(upload.id, {
  part_ids: partIds, md5: createHash('md5').update(data).digest('hex'),
});
const file = completed.file;
check(completed.status === 'completed' && file?.object === 'file', `completed upload ${JSON.stringify(completed)}`);
check(file.bytes === data.length && file.filename === 'node-parts.bin' && file.purpose === 'user_data', 'the File');
step('complete', { file: file.id, bytes: file.bytes });

const container = await client.containers.create({ name: 'node parts', file_ids: [file.id] });
check(container.status === 'running', `container status ${container.status}`);
const inside = [];
for await (const item of client.containers.files.list(container.id)) inside.push(item);
check(inside.length === 1 && inside[0].path === '/mnt/data/node-parts.bin', `container files ${JSON.stringify(inside)}`);
const response = await client.containers.files.content.retrieve(inside[0].id, { container_id: container.id });
const downloaded = Buffer.from(await response.arrayBuffer());
check(downloaded.length === data.length && sha256(downloaded) === sha256(data), 'the container has the same bytes');
step('file_ids', { bytes: downloaded.length, sha256: sha256(downloaded) });

const abandoned = await client.uploads.create({
  bytes: 10, filename: 'never.txt', mime_type: 'text/plain', purpose: 'user_data',
});
await client.uploads.parts.create(abandoned.id, { data: await toFile(Buffer.from('12345'), 'part') });
const cancelled = await client.uploads.cancel(abandoned.id);
check(cancelled.status === 'cancelled' && !cancelled.file, 'cancelled upload');
await expectError(client.uploads.parts.create(abandoned.id, { data: await toFile(Buffer.from('late'), 'part') }),
  OpenAI.BadRequestError, 400);
step('cancel', abandoned.id);

done('openai-node');
