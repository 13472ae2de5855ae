import { test, expect } from './fixtures';

test('the shop has a title', async ({ page }) => {
  await expect(page).toHaveTitle('Supercheck Demo Shop');
});

test('the heading says what it is', async ({ page }) => {
  await expect(page.locator('h1')).toHaveText('Demo Shop');
});
