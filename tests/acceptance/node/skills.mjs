// The Skills API with the official `openai` npm package: create from a zip, list with cursor pages,
// a bad bundle refused, and a container made with a skill_reference to it.
// SKILL_ZIP names a zip of one folder `node-skill/` with its SKILL.md (made by test_node_sdk.py);
// prints the container's id so the test can look at what was unpacked.
import { readFile } from 'node:fs/promises';
import OpenAI, { toFile } from 'openai';
import { check, done, expectError, step } from './lib.mjs';

const client = new OpenAI(); // OPENAI_BASE_URL / OPENAI_API_KEY from the environment
const zip = await readFile(process.env.SKILL_ZIP);
const upload = () => toFile(zip, 'node-skill.zip', { type: 'application/zip' });

const skill = await client.skills.create({ files: await upload() });
check(/^skill_/.test(skill.id) && skill.object === 'skill', `skill object ${JSON.stringify(skill)}`);
check(skill.name === 'node-skill' && skill.description === 'made by the node SDK', 'name and description from SKILL.md');
check(skill.default_version === '1' && skill.latest_version === '1', 'the first version is the default');
step('create', { id: skill.id, name: skill.name });

const second = await client.skills.create({ files: await upload() });
const ascending = [];
for await (const item of client.skills.list({ limit: 1, order: 'asc' })) ascending.push(item.id);
check(JSON.stringify(ascending) === JSON.stringify([skill.id, second.id]), `listed ${ascending}`);
const page = await client.skills.list({ limit: 1, order: 'desc' });
check(page.data.length === 1 && page.data[0].id === second.id && page.has_more, 'one page of one, newest first');
step('list', ascending.length);

const bad = await expectError(
  client.skills.create({ files: await toFile(Buffer.from('not a zip'), 'broken.zip', { type: 'application/zip' }) }),
  OpenAI.BadRequestError, 400);
check(bad.param === 'files', `the error names files, not ${bad.param}`);
await expectError(client.skills.retrieve('skill_' + '0'.repeat(27)), OpenAI.NotFoundError, 404);
step('errors', ['BadRequestError', 'NotFoundError']);

const container = await client.containers.create({
  name: 'node skill',
  skills: [{ type: 'skill_reference', skill_id: skill.id }],
});
check(container.status === 'running', `container status ${container.status}`);
step('container', container.id);

await client.skills.delete(second.id);
await expectError(client.skills.retrieve(second.id), OpenAI.NotFoundError, 404);
step('delete', true);

done('openai-node');
