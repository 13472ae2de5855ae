import { test, expect } from './fixtures';

test('adding to the basket updates the status', async ({ page }) => {
  await expect(page.locator('#status')).toHaveText('Your basket is empty.');
  await page.click('#add');
  await expect(page.locator('#status')).toHaveText('1 item in your basket.');
});
